/**
 * Validation of an ingest collection, on the request's bytes.
 *
 * One pass over the body validates the JSON grammar, checks nesting depth, finds duplicated
 * top-level keys and records where each element of `data` starts and ends. No string is decoded
 * but `version`, `token` and the top-level keys, and no object graph is built: each payload's
 * NDJSON line is the element's own bytes, which parse to the same value as the payload sent, keep
 * `__proto__` keys, number spellings and escaped lone surrogates as sent, and cost neither
 * `JSON.parse` nor re-serialisation (see `domain/Slabs`).
 */
import { isUtf8 } from "node:buffer"

export type CollectionError =
  | { readonly reason: "invalid_json"; readonly message: string }
  | { readonly reason: "invalid_shape"; readonly message: string }

export interface Collection {
  readonly version: string
  readonly token: string
  /** Per payload, the [start, end) byte offsets of its element in the body: two numbers each. */
  readonly spans: ReadonlyArray<number>
  /**
   * Some element is written over several lines. Its raw line breaks can only be whitespace
   * between tokens (a string may not hold one), and an NDJSON line may not contain them.
   */
  readonly multiline: boolean
}

export type ParsedCollection =
  | { readonly _tag: "Collection"; readonly collection: Collection }
  | { readonly _tag: "Invalid"; readonly error: CollectionError }

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
const PLUS = 0x2b
const DOT = 0x2e
const ZERO = 0x30
const NINE = 0x39
const LOWER_E = 0x65
const UPPER_E = 0x45
const LOWER_U = 0x75

const TRUE = Buffer.from("true")
const FALSE = Buffer.from("false")
const NULL = Buffer.from("null")

const MALFORMED: CollectionError = { reason: "invalid_json", message: "malformed JSON" }

const invalid = (error: CollectionError): ParsedCollection => ({ _tag: "Invalid", error })
const shape = (message: string): CollectionError => ({ reason: "invalid_shape", message })

const isDigit = (c: number) => c >= ZERO && c <= NINE
const isHex = (c: number) => isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)
const isWhitespace = (c: number) => c === SPACE || c === LF || c === CR || c === TAB

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

/** Index of the first byte after the escape sequence at `at` (a backslash), or -1. */
const escapeEnd = (body: Buffer, at: number): number => {
  const e = body[at + 1]
  if (e === LOWER_U) {
    for (let k = 2; k < 6; k++) if (!isHex(body[at + k] ?? 0)) return -1
    return at + 6
  }
  return e === QUOTE || e === BACKSLASH || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 ||
      e === 0x74
    ? at + 2
    : -1
}

/** Index of the first byte after the number starting at `start`, or -1. */
const numberEnd = (body: Buffer, start: number): number => {
  const length = body.length
  let i = start
  if (body[i] === MINUS) i++
  if (i >= length) return -1
  if (body[i] === ZERO) {
    i++
  } else if (isDigit(body[i]!)) {
    while (i < length && isDigit(body[i]!)) i++
  } else {
    return -1
  }
  if (i < length && body[i] === DOT) {
    i++
    if (i >= length || !isDigit(body[i]!)) return -1
    while (i < length && isDigit(body[i]!)) i++
  }
  if (i < length && (body[i] === LOWER_E || body[i] === UPPER_E)) {
    i++
    if (i < length && (body[i] === PLUS || body[i] === MINUS)) i++
    if (i >= length || !isDigit(body[i]!)) return -1
    while (i < length && isDigit(body[i]!)) i++
  }
  return i
}

const literalAt = (body: Buffer, at: number, literal: Buffer): boolean => {
  if (at + literal.length > body.length) return false
  for (let k = 0; k < literal.length; k++) if (body[at + k] !== literal[k]) return false
  return true
}

// The validator's helpers are module functions, not closures over its state: a closure makes V8
// keep every variable it captures in a heap context, where the main loop reads and writes them.
// They report a second result through the one small object of each parse.

interface Scan {
  /** Set by `stringEnd`: the string it read holds an escape. */
  escaped: boolean
  /** Set by `skipWhitespace`: the whitespace it skipped holds a line break. */
  broke: boolean
}

/**
 * Index of the closing quote of the string opening at `start`, or -1 when the string is
 * unterminated, holds a raw control character or a bad escape. Strings are most of a body: they
 * are read four bytes at a time through `words`, the 4-byte-aligned words of the body's memory
 * from byte `wordsStart` of it, until a word holds a quote, a backslash or a control.
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
    if (c === SPACE || c === TAB) {
      j++
    } else if (c === LF || c === CR) {
      scan.broke = true
      j++
    } else {
      break
    }
  }
  return j
}

/**
 * Records in `spans` the element from `start` to the separator at `at`, trailing whitespace
 * excluded. True when `checkBreaks` and the element holds a line break: a break after its last
 * token does not make it multi-line.
 */
const pushElement = (body: Buffer, spans: Array<number>, start: number, at: number, checkBreaks: boolean): boolean => {
  let end = at
  while (end > start && isWhitespace(body[end - 1]!)) end--
  spans.push(start, end)
  if (checkBreaks) {
    for (let k = start; k < end; k++) if (body[k] === LF || body[k] === CR) return true
  }
  return false
}

const VERSION = Buffer.from("version")
const TOKEN = Buffer.from("token")
const DATA = Buffer.from("data")
type TopKey = "version" | "token" | "data" | ""

/** The top-level key whose string token spans [start, end]: one of the three the validator reads, or "". */
const topKey = (body: Buffer, start: number, end: number, escaped: boolean): TopKey => {
  if (escaped) {
    const key = stringValue(body, start, end, true)
    return key === "version" || key === "token" || key === "data" ? key : ""
  }
  const length = end - start - 1
  const name = length === 7 ? VERSION : length === 5 ? TOKEN : length === 4 ? DATA : undefined
  if (name === undefined) return ""
  for (let k = 0; k < length; k++) if (body[start + 1 + k] !== name[k]) return ""
  return length === 7 ? "version" : length === 5 ? "token" : "data"
}

/** The value of the JSON string token spanning [start, end] (quotes included). */
const stringValue = (body: Buffer, start: number, end: number, escaped: boolean): string =>
  escaped ? JSON.parse(body.toString("utf8", start, end + 1)) as string : body.toString("utf8", start + 1, end)

/**
 * Parses and validates one collection. Pure and synchronous: it runs on the request path.
 */
export const parseCollection = (body: Buffer, maxDepth: number): ParsedCollection => {
  if (!isUtf8(body)) return invalid({ reason: "invalid_json", message: "invalid UTF-8" })
  const length = body.length

  const scan: Scan = { escaped: false, broke: false }
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
      if (depth === 1 && topObject) {
        if (currentKey === "version") version = stringValue(body, i, close, scan.escaped)
        else if (currentKey === "token") token = stringValue(body, i, close, scan.escaped)
      }
      end = close + 1
    } else if (c === MINUS || isDigit(c)) {
      end = numberEnd(body, i)
      if (end < 0) return invalid(MALFORMED)
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
  if (!topObject) return invalid(shape("the body must be a JSON object"))
  if (duplicateKey !== undefined) return invalid(duplicateKey)
  if (version === undefined || version.length === 0) return invalid(shape("\"version\" must be a non-empty string"))
  if (token === undefined) return invalid(shape("\"token\" must be a string"))
  if (!dataIsArray || spans.length === 0) return invalid(shape("\"data\" must be a non-empty array"))
  if (shapeError !== undefined) return invalid(shapeError)
  return { _tag: "Collection", collection: { version, token, spans, multiline } }
}
