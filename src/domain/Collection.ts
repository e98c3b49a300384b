/**
 * Validation of an ingest collection and encoding of its payloads as NDJSON lines.
 *
 * One pass over the text validates the JSON grammar, checks nesting depth, finds duplicated
 * top-level keys and records where each element of `data` starts and ends. No object graph is
 * built: each payload's line is the element's own text sliced out of the body, which parses to the
 * same value as the payload sent, keeps `__proto__` keys, number spellings and escaped lone
 * surrogates as sent, and costs neither `JSON.parse` nor re-serialisation. An element written over
 * several lines has its line breaks (whitespace, outside strings) blanked: an NDJSON line may not
 * contain one.
 *
 * Strings, the bulk of most bodies, are skipped with `indexOf`; only strings with escapes, and
 * bodies with raw control characters (pretty-printed ones), are walked character by character.
 */

export type CollectionError =
  | { readonly reason: "invalid_json"; readonly message: string }
  | { readonly reason: "invalid_shape"; readonly message: string }

export interface Collection {
  readonly version: string
  readonly token: string
  /** One NDJSON line per payload, without its trailing "\n". */
  readonly lines: ReadonlyArray<string>
  /**
   * Per line, its [start, end) offsets in the text, or -1, -1 where the line is not the text's
   * own slice (an element written over several lines). Lets the caller take a line's bytes
   * straight out of the request body.
   */
  readonly spans: ReadonlyArray<number>
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

/** Any control character: none may appear raw inside a string; outside, only whitespace. */
const CONTROL = /[\u0000-\u001f]/

const LINE_BREAKS = /[\r\n]/g

const MALFORMED: CollectionError = { reason: "invalid_json", message: "malformed JSON" }

const invalid = (error: CollectionError): ParsedCollection => ({ _tag: "Invalid", error })
const shape = (message: string): CollectionError => ({ reason: "invalid_shape", message })

const isDigit = (c: number) => c >= ZERO && c <= NINE
const isHex = (c: number) => isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)

/** Index of the closing quote of the string opening at `start`, walking every character. */
const stringEndSlow = (text: string, start: number): number => {
  const length = text.length
  let i = start + 1
  while (i < length) {
    const c = text.charCodeAt(i)
    if (c === QUOTE) return i
    if (c < SPACE) return -1
    if (c === BACKSLASH) {
      const e = text.charCodeAt(i + 1)
      if (e === LOWER_U) {
        for (let k = 2; k < 6; k++) if (!isHex(text.charCodeAt(i + k))) return -1
        i += 6
      } else if (
        e === QUOTE || e === BACKSLASH || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 ||
        e === 0x74
      ) {
        i += 2
      } else {
        return -1
      }
    } else {
      i++
    }
  }
  return -1
}

/** Index of the first character after the number starting at `start`, or -1. */
const numberEnd = (text: string, start: number): number => {
  let i = start
  if (text.charCodeAt(i) === MINUS) i++
  const first = text.charCodeAt(i)
  if (first === ZERO) {
    i++
  } else if (isDigit(first)) {
    while (isDigit(text.charCodeAt(i))) i++
  } else {
    return -1
  }
  if (text.charCodeAt(i) === DOT) {
    i++
    if (!isDigit(text.charCodeAt(i))) return -1
    while (isDigit(text.charCodeAt(i))) i++
  }
  const e = text.charCodeAt(i)
  if (e === LOWER_E || e === UPPER_E) {
    i++
    const sign = text.charCodeAt(i)
    if (sign === PLUS || sign === MINUS) i++
    if (!isDigit(text.charCodeAt(i))) return -1
    while (isDigit(text.charCodeAt(i))) i++
  }
  return i
}

/** The value of a JSON string token spanning [start, end] (quotes included). */
const stringValue = (text: string, start: number, end: number, escaped: boolean): string =>
  escaped ? JSON.parse(text.slice(start, end + 1)) as string : text.slice(start + 1, end)

/**
 * Parses and validates one collection. Pure and synchronous: it runs on the request path.
 */
export const parseCollection = (text: string, maxDepth: number): ParsedCollection => {
  const length = text.length
  // Compact bodies have no control characters at all: their strings need no per-character check.
  const clean = !CONTROL.test(text)

  // Containers open around the current position: true for an object, false for an array.
  const stack: Array<boolean> = []
  let i = 0
  let afterValue = false // a value just ended: expect `,`, a closing bracket, or the end
  let expectKey = false // inside an object, after `{` or `,`: expect a key (or `}` right after `{`)
  let emptyAllowed = false // right after `{` or `[`

  // Top level: the key whose value is being read, what was seen, and the `data` elements.
  let topObject = false
  let currentKey = ""
  let seenVersion = false
  let seenToken = false
  let seenData = false
  let version: string | undefined
  let token: string | undefined
  let shapeError: CollectionError | undefined
  let inData = false
  let dataIsArray = false
  const spans: Array<number> = []
  const multiline: Array<boolean> = []
  let elementStart = -1
  let elementBreak = false

  // Escapes are rare: find backslashes with one cursor over the text instead of a search per string.
  let nextBackslash = text.indexOf("\\")
  let lastEscaped = false
  /** Index of the closing quote of the string opening at `start`, or -1; sets `lastEscaped`. */
  const stringEnd = (start: number): number => {
    if (!clean) {
      const close = stringEndSlow(text, start)
      lastEscaped = close > 0 && text.lastIndexOf("\\", close) > start
      return close
    }
    const quote = text.indexOf("\"", start + 1)
    if (quote < 0) return -1
    if (nextBackslash >= 0 && nextBackslash <= start) nextBackslash = text.indexOf("\\", start + 1)
    lastEscaped = nextBackslash >= 0 && nextBackslash < quote
    return lastEscaped ? stringEndSlow(text, start) : quote
  }

  const noteShape = (message: string) => {
    if (shapeError === undefined) shapeError = shape(message)
  }

  while (true) {
    // whitespace
    while (i < length) {
      const c = text.charCodeAt(i)
      if (c === SPACE || c === TAB) {
        i++
      } else if (c === LF || c === CR) {
        if (elementStart >= 0) elementBreak = true
        i++
      } else {
        break
      }
    }
    if (i >= length) break
    const c = text.charCodeAt(i)
    const depth = stack.length

    if (afterValue) {
      if (depth === 0) return invalid(MALFORMED) // text after the top-level value
      const inObject = stack[depth - 1]!
      if (c === COMMA) {
        if (inData && depth === 2) closeElement(i)
        i++
        afterValue = false
        expectKey = inObject
        emptyAllowed = false
        continue
      }
      if (c === (inObject ? CLOSE_OBJECT : CLOSE_ARRAY)) {
        if (inData && depth === 2) {
          closeElement(i)
          inData = false
        }
        stack.pop()
        i++
        if (stack.length === 1) currentKey = ""
        continue // afterValue stays true: the container was a value
      }
      return invalid(MALFORMED)
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
      const close = stringEnd(i)
      if (close < 0) return invalid(MALFORMED)
      const escaped = lastEscaped
      if (depth === 1) {
        const key = stringValue(text, i, close, escaped)
        if (key === "version" || key === "token" || key === "data") {
          if ((key === "version" && seenVersion) || (key === "token" && seenToken) || (key === "data" && seenData)) {
            noteShape(`duplicate "${key}" key`)
          }
          if (key === "version") seenVersion = true
          else if (key === "token") seenToken = true
          else seenData = true
        }
        currentKey = key
      }
      i = close + 1
      while (i < length) {
        const w = text.charCodeAt(i)
        if (w === SPACE || w === TAB || w === LF || w === CR) i++
        else break
      }
      if (text.charCodeAt(i) !== COLON) return invalid(MALFORMED)
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
      if (c !== OPEN_OBJECT) noteShape("every element of \"data\" must be a JSON object")
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
      const close = stringEnd(i)
      if (close < 0) return invalid(MALFORMED)
      const escaped = lastEscaped
      if (depth === 1 && topObject) {
        if (currentKey === "version") version = stringValue(text, i, close, escaped)
        else if (currentKey === "token") token = stringValue(text, i, close, escaped)
      }
      end = close + 1
    } else if (c === MINUS || isDigit(c)) {
      end = numberEnd(text, i)
      if (end < 0) return invalid(MALFORMED)
    } else if (text.startsWith("true", i)) {
      end = i + 4
    } else if (text.startsWith("false", i)) {
      end = i + 5
    } else if (text.startsWith("null", i)) {
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
  if (shapeError !== undefined && shapeError.message.startsWith("duplicate")) return invalid(shapeError)
  if (version === undefined || version.length === 0) return invalid(shape("\"version\" must be a non-empty string"))
  if (token === undefined) return invalid(shape("\"token\" must be a string"))
  if (!dataIsArray || spans.length === 0) return invalid(shape("\"data\" must be a non-empty array"))
  if (shapeError !== undefined) return invalid(shapeError)

  const count = spans.length / 2
  const lines = new Array<string>(count)
  for (let k = 0; k < count; k++) {
    const line = text.slice(spans[2 * k], spans[2 * k + 1])
    if (multiline[k] === true) {
      // Raw line breaks can only be whitespace between tokens here (strings were validated):
      // blanking them keeps the element's exact text, number spellings included.
      lines[k] = line.replace(LINE_BREAKS, " ")
      spans[2 * k] = -1
      spans[2 * k + 1] = -1
    } else {
      lines[k] = line
    }
  }
  return { _tag: "Collection", collection: { version, token, lines, spans } }

  /** Ends the current `data` element at the separator at `at` (trailing whitespace excluded). */
  function closeElement(at: number) {
    if (elementStart < 0) return
    let end = at
    while (end > elementStart) {
      const w = text.charCodeAt(end - 1)
      if (w === SPACE || w === TAB || w === LF || w === CR) end--
      else break
    }
    spans.push(elementStart, end)
    // A break after the element's last token does not make it multi-line.
    multiline.push(elementBreak && /[\r\n]/.test(text.slice(elementStart, end)))
    elementStart = -1
    elementBreak = false
  }
}
