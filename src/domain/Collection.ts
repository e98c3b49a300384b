/**
 * Validation of an ingest collection, on the request's bytes, in one pass: the JSON grammar, the
 * nesting depth, duplicated top-level keys, and where each element of `data` starts and ends. No
 * object graph is built: a payload's NDJSON line is the element's own bytes (domain/Slabs). With
 * the `i-json` profile (RFC 7493) the pass also refuses what a strict reader would, since one such
 * payload makes a shared object unreadable: a member name twice in one object, an escaped lone
 * surrogate, a number beyond a double's range.
 *
 * The string and whitespace scanners sit here beside the loop, as module functions: imported from
 * another module they cost the loop a fifth of its speed (BENCHMARKS.md), and as closures V8 would
 * keep what they capture in a heap context. They return a second result in the parse's `Scan`.
 */
import { isUtf8 } from "node:buffer"
import { MemberNames } from "./collection/MemberNames.js"
import { PayloadSpans } from "./collection/PayloadSpans.js"
import { escapeEnd, FALSE, literalAt, NULL, numberEnd, pushElement, TRUE } from "./collection/Scalars.js"
import { hasLoneSurrogate, overflows, stringValue, type TopKey, topKey } from "./collection/Tokens.js"
import {
  type CollectionError,
  DUPLICATE_NAME,
  invalid,
  type JsonProfile,
  LONE_SURROGATE,
  MALFORMED,
  NUMBER_OVERFLOW,
  type ParsedCollection,
  shape
} from "./collection/Types.js"

export { PayloadSpans }
export type { Collection, CollectionError, JsonProfile, ParsedCollection } from "./collection/Types.js"

const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPEN_OBJECT = 0x7b
const CLOSE_OBJECT = 0x7d
const OPEN_ARRAY = 0x5b
const CLOSE_ARRAY = 0x5d
const COMMA = 0x2c
const COLON = 0x3a
const LF = 0x0a
const CR = 0x0d
const SPACE = 0x20
const TAB = 0x09
const MINUS = 0x2d
const ZERO = 0x30
const NINE = 0x39

interface Scan {
  /** `stringEnd`: the string holds an escape. */
  escaped: boolean
  /** `skipWhitespace`: the whitespace holds a line break. */
  broke: boolean
}

const isDigit = (c: number) => c >= ZERO && c <= NINE

/**
 * No byte of the word is a quote, a backslash or a control character (below 0x20). Each term is
 * the classic test for a zero byte (`(x - 0x01..) & ~x & 0x80..`), on the word xor-ed with the
 * byte sought, or for a byte below 0x20; none has false positives on whether such a byte exists.
 */
const isPlain = (w: number): boolean => {
  const quote = w ^ 0x22222222
  const backslash = w ^ 0x5c5c5c5c
  return ((((w - 0x20202020) & ~w) | ((quote - 0x01010101) & ~quote) | ((backslash - 0x01010101) & ~backslash)) &
    0x80808080) === 0
}

/**
 * Index of the closing quote of the string opening at `start`, or -1 when the string is
 * unterminated, holds a raw control character or a bad escape. Strings are most of a body: they
 * are read four bytes at a time through `words` (the body's 4-byte-aligned words from byte
 * `wordsStart` of its memory) until a word holds a quote, a backslash or a control.
 */
const stringEnd = (scan: Scan, body: Buffer, words: Int32Array, wordsStart: number, start: number): number => {
  scan.escaped = false
  const length = body.length
  const offset = body.byteOffset
  let j = start + 1
  while (j < length) {
    if (((offset + j) & 3) === 0 && j + 4 <= length && isPlain(words[(offset + j - wordsStart) >> 2]!)) {
      j += 4
      continue
    }
    const c = body[j]!
    if (c === QUOTE) return j
    if (c === BACKSLASH) {
      scan.escaped = true
      j = escapeEnd(body, j)
      if (j < 0) return -1
    } else if (c < SPACE) {
      return -1
    } else {
      j++
    }
  }
  return -1
}

/** The first index at or after `from` that is not whitespace. */
const skipWhitespace = (scan: Scan, body: Buffer, from: number): number => {
  scan.broke = false
  const length = body.length
  let j = from
  while (j < length) {
    const c = body[j]!
    if (c === SPACE || c === TAB) j++
    else if (c === LF || c === CR) {
      scan.broke = true
      j++
    } else break
  }
  return j
}

/** Parses and validates one collection. Pure and synchronous: it runs on the request path. */
export const parseCollection = (body: Buffer, maxDepth: number, profile: JsonProfile = "i-json"): ParsedCollection => {
  if (!isUtf8(body)) return invalid({ reason: "invalid_json", message: "invalid UTF-8" })
  const length = body.length

  const scan: Scan = { escaped: false, broke: false }
  const strict = profile === "i-json"
  const names = strict ? new MemberNames() : undefined
  // The first I-JSON rule a payload breaks.
  let strictError: CollectionError | undefined
  // Containers open around the current position: true for an object, false for an array.
  const stack: Array<boolean> = []
  // A UTF-8 byte order mark may precede the text (RFC 8259 §8.1 lets a parser ignore it).
  let i = length >= 3 && body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf ? 3 : 0
  let afterValue = false // a value just ended: expect `,`, a closing bracket, or the end
  let expectKey = false // inside an object, after `{` or `,`: expect a key (or `}` right after `{`)
  let emptyAllowed = false // right after `{` or `[`

  // Top level: the key whose value is being read, what was seen, and the `data` elements.
  let topObject = false
  let currentKey: TopKey = ""
  let seenVersion = false
  let seenToken = false
  let seenData = false
  let version: string | undefined
  let token: string | undefined
  // A top-level key given twice answers before any other shape error; the rest come after the
  // checks of `version`, `token` and `data`.
  let duplicateKey: CollectionError | undefined
  let shapeError: CollectionError | undefined
  let inData = false
  let dataIsArray = false
  const spans: Array<number> = []
  let multiline = false
  let elementStart = -1
  let elementBreak = false

  const wordsStart = (body.byteOffset + 3) & ~3
  const words = new Int32Array(body.buffer, wordsStart, Math.max(0, (body.byteOffset + length - wordsStart) >> 2))

  while (true) {
    i = skipWhitespace(scan, body, i)
    if (scan.broke && elementStart >= 0) elementBreak = true
    if (i >= length) break
    const c = body[i]!
    const depth = stack.length

    if (afterValue) {
      if (depth === 0) return invalid(MALFORMED) // bytes after the top-level value
      const inObject = stack[depth - 1]!
      if (c !== COMMA && c !== (inObject ? CLOSE_OBJECT : CLOSE_ARRAY)) return invalid(MALFORMED)
      if (inData && depth === 2 && elementStart >= 0) {
        // The separator ends the current `data` element.
        if (pushElement(body, spans, elementStart, i, elementBreak && !multiline)) multiline = true
        elementStart = -1
        elementBreak = false
      }
      i++
      if (c === COMMA) {
        afterValue = false
        expectKey = inObject
        emptyAllowed = false
        continue
      }
      if (inData && depth === 2) inData = false
      stack.pop()
      if (stack.length === 1) currentKey = ""
      continue // afterValue stays true: the container was a value
    }

    if (expectKey) {
      if (c === CLOSE_OBJECT && emptyAllowed) {
        stack.pop()
        i++
        afterValue = true
        expectKey = false
        if (stack.length === 1) currentKey = ""
        continue
      }
      if (c !== QUOTE) return invalid(MALFORMED)
      const close = stringEnd(scan, body, words, wordsStart, i)
      if (close < 0) return invalid(MALFORMED)
      if (strict && elementStart >= 0) {
        if (scan.escaped && hasLoneSurrogate(body, i, close)) strictError ??= LONE_SURROGATE
        if (names!.repeats(depth, body, i, close, scan.escaped)) strictError ??= DUPLICATE_NAME
      }
      if (depth === 1) {
        const key = topKey(body, i, close, scan.escaped)
        if (key !== "") {
          if ((key === "version" && seenVersion) || (key === "token" && seenToken) || (key === "data" && seenData)) {
            duplicateKey ??= shape(`duplicate "${key}" key`)
          }
          if (key === "version") seenVersion = true
          else if (key === "token") seenToken = true
          else seenData = true
        }
        currentKey = key
      }
      i = skipWhitespace(scan, body, close + 1)
      if (scan.broke && elementStart >= 0) elementBreak = true
      if (body[i] !== COLON) return invalid(MALFORMED)
      i++
      expectKey = false
      emptyAllowed = false
      continue
    }

    // a value
    if (c === CLOSE_ARRAY && emptyAllowed && depth > 0 && !stack[depth - 1]) {
      stack.pop()
      i++
      afterValue = true
      emptyAllowed = false
      if (inData && depth === 2) inData = false
      if (stack.length === 1) currentKey = ""
      continue
    }
    if (inData && depth === 2) {
      elementStart = i
      elementBreak = false
      if (c !== OPEN_OBJECT) shapeError ??= shape("every element of \"data\" must be a JSON object")
    }
    if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (depth + 1 > maxDepth) return invalid({ reason: "invalid_json", message: `nesting deeper than ${maxDepth}` })
      if (depth === 0) topObject = c === OPEN_OBJECT
      if (depth === 1 && topObject && currentKey === "data") {
        if (c === OPEN_ARRAY && !dataIsArray) {
          inData = true
          dataIsArray = true
        } else {
          dataIsArray = false
        }
      }
      if (strict && elementStart >= 0 && c === OPEN_OBJECT) names!.open(depth + 1)
      stack.push(c === OPEN_OBJECT)
      i++
      expectKey = c === OPEN_OBJECT
      emptyAllowed = true
      continue
    }
    let end: number
    if (c === QUOTE) {
      const close = stringEnd(scan, body, words, wordsStart, i)
      if (close < 0) return invalid(MALFORMED)
      if (strict && scan.escaped && elementStart >= 0 && hasLoneSurrogate(body, i, close)) strictError ??= LONE_SURROGATE
      if (depth === 1 && topObject) {
        if (currentKey === "version") version = stringValue(body, i, close, scan.escaped)
        else if (currentKey === "token") token = stringValue(body, i, close, scan.escaped)
      }
      end = close + 1
    } else if (c === MINUS || isDigit(c)) {
      end = numberEnd(body, i)
      if (end < 0) return invalid(MALFORMED)
      if (strict && elementStart >= 0 && overflows(body, i, end)) strictError ??= NUMBER_OVERFLOW
    } else if (literalAt(body, i, TRUE)) {
      end = i + 4
    } else if (literalAt(body, i, FALSE)) {
      end = i + 5
    } else if (literalAt(body, i, NULL)) {
      end = i + 4
    } else {
      return invalid(MALFORMED)
    }
    if (depth === 1 && topObject && currentKey === "data") dataIsArray = false
    if (depth === 1 && topObject && c !== QUOTE) {
      if (currentKey === "version") version = undefined
      else if (currentKey === "token") token = undefined
    }
    i = end
    afterValue = true
    emptyAllowed = false
  }

  if (!afterValue || stack.length > 0) return invalid(MALFORMED)
  if (strictError !== undefined) return invalid(strictError)
  if (!topObject) return invalid(shape("the body must be a JSON object"))
  if (duplicateKey !== undefined) return invalid(duplicateKey)
  if (version === undefined || version.length === 0) return invalid(shape("\"version\" must be a non-empty string"))
  if (token === undefined) return invalid(shape("\"token\" must be a string"))
  if (!dataIsArray || spans.length === 0) return invalid(shape("\"data\" must be a non-empty array"))
  if (shapeError !== undefined) return invalid(shapeError)
  return { _tag: "Collection", collection: { version, token, payloads: new PayloadSpans(spans), multiline } }
}
