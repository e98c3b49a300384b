/**
 * Validation of an ingest collection and encoding of its payloads as NDJSON lines.
 *
 * One structural pass over the text checks nesting depth, finds duplicated top-level keys and
 * records where each element of `data` starts and ends; `JSON.parse` then validates the syntax
 * and gives the typed fields. Each payload's line is the element's own text sliced out of the
 * body (it parses to the same value as the payload sent, keeps `__proto__` keys and escaped lone
 * surrogates as sent, and costs no re-serialisation); an element written over several lines is
 * re-serialised, because an NDJSON line may not contain a raw line break.
 */

export type CollectionError =
  | { readonly reason: "invalid_json"; readonly message: string }
  | { readonly reason: "invalid_shape"; readonly message: string }

export interface Collection {
  readonly version: string
  readonly token: string
  /** One NDJSON line per payload, without its trailing "\n". */
  readonly lines: ReadonlyArray<string>
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

const isWhitespace = (c: number): boolean => c === SPACE || c === LF || c === CR || c === TAB

const invalid = (reason: CollectionError["reason"], message: string): ParsedCollection => ({
  _tag: "Invalid",
  error: { reason, message }
})

interface Structure {
  /** start, end offsets of each element of the top-level `data` array. */
  readonly spans: Array<number>
  /** whether the element at the same index contains a raw line break between its tokens. */
  readonly multiline: Array<boolean>
}

/**
 * Walks the text once. Returns an error for nesting deeper than `maxDepth` or a duplicated
 * `version`, `token` or `data` key; everything else about syntax is left to `JSON.parse`.
 */
const scan = (text: string, maxDepth: number): Structure | CollectionError => {
  const length = text.length
  const spans: Array<number> = []
  const multiline: Array<boolean> = []
  const seen = new Set<string>()
  let depth = 0
  let topLevelObject = false
  let expectingKey = false
  let currentKey = ""
  let dataDepth = -1 // depth of the `data` array while inside it
  let elementStart = -1
  let elementFirstBreak = -1 // offset of the first line break since the element started
  let lastTokenEnd = 0

  const closeElement = () => {
    if (elementStart >= 0) {
      spans.push(elementStart, lastTokenEnd)
      multiline.push(elementFirstBreak >= 0 && elementFirstBreak < lastTokenEnd)
    }
    elementStart = -1
    elementFirstBreak = -1
  }

  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i)
    if (isWhitespace(c)) {
      if ((c === LF || c === CR) && elementStart >= 0 && elementFirstBreak < 0) elementFirstBreak = i
      continue
    }
    if (dataDepth > 0 && depth === dataDepth && elementStart < 0 && c !== CLOSE_ARRAY && c !== COMMA) {
      elementStart = i
    }
    if (c === QUOTE) {
      let j = i + 1
      let escaped = false
      while (j < length) {
        const d = text.charCodeAt(j)
        if (d === BACKSLASH) {
          escaped = true
          j += 2
        } else if (d === QUOTE) {
          break
        } else {
          j++
        }
      }
      if (j >= length) return { reason: "invalid_json", message: "malformed JSON" }
      if (depth === 1 && topLevelObject && expectingKey) {
        let key = text.slice(i + 1, j)
        if (escaped) {
          try {
            key = JSON.parse(text.slice(i, j + 1)) as string
          } catch {
            return { reason: "invalid_json", message: "malformed JSON" }
          }
        }
        if (key === "version" || key === "token" || key === "data") {
          if (seen.has(key)) return { reason: "invalid_shape", message: `duplicate "${key}" key` }
          seen.add(key)
        }
        currentKey = key
        expectingKey = false
      }
      i = j
      lastTokenEnd = j + 1
      continue
    }
    switch (c) {
      case OPEN_OBJECT:
      case OPEN_ARRAY: {
        depth++
        if (depth > maxDepth) {
          return { reason: "invalid_json", message: `nesting deeper than ${maxDepth}` }
        }
        if (depth === 1) {
          topLevelObject = c === OPEN_OBJECT
          expectingKey = topLevelObject
        } else if (depth === 2 && c === OPEN_ARRAY && currentKey === "data" && dataDepth < 0) {
          dataDepth = 2
        }
        break
      }
      case CLOSE_OBJECT:
      case CLOSE_ARRAY: {
        if (depth === dataDepth) {
          closeElement()
          dataDepth = -dataDepth // the array is closed; its spans are complete
        }
        depth--
        break
      }
      case COMMA: {
        if (depth === dataDepth) closeElement()
        else if (depth === 1) expectingKey = topLevelObject
        break
      }
      case COLON:
        break
      default:
        // a literal (number, true, false, null): skip to its last character
        while (i + 1 < length) {
          const d = text.charCodeAt(i + 1)
          if (isWhitespace(d) || d === COMMA || d === CLOSE_OBJECT || d === CLOSE_ARRAY || d === COLON) break
          i++
        }
    }
    lastTokenEnd = i + 1
  }
  return { spans, multiline }
}

const isJsonObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/**
 * Parses and validates one collection. Pure and synchronous: it runs on the request path.
 */
export const parseCollection = (text: string, maxDepth: number): ParsedCollection => {
  const structure = scan(text, maxDepth)
  if (!("spans" in structure)) return { _tag: "Invalid", error: structure }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return invalid("invalid_json", "malformed JSON")
  }
  if (!isJsonObject(value)) return invalid("invalid_shape", "the body must be a JSON object")
  const { data, token, version } = value
  if (typeof version !== "string" || version.length === 0) {
    return invalid("invalid_shape", "\"version\" must be a non-empty string")
  }
  if (typeof token !== "string") return invalid("invalid_shape", "\"token\" must be a string")
  if (!Array.isArray(data) || data.length === 0) {
    return invalid("invalid_shape", "\"data\" must be a non-empty array")
  }
  const { multiline, spans } = structure
  const sliced = spans.length === data.length * 2
  const lines = new Array<string>(data.length)
  for (let k = 0; k < data.length; k++) {
    const payload: unknown = data[k]
    if (!isJsonObject(payload)) return invalid("invalid_shape", "every element of \"data\" must be a JSON object")
    lines[k] = sliced && multiline[k] === false
      ? text.slice(spans[2 * k], spans[2 * k + 1])
      : JSON.stringify(payload)
  }
  return { _tag: "Collection", collection: { version, token, lines } }
}
