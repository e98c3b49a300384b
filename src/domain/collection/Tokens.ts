/**
 * The validator's cold helpers: what it reads a few times a request (the top-level keys,
 * `version` and `token`), and what only the I-JSON profile asks of a token already known to be
 * valid. The one-pass scan's hot functions share its own module (domain/Collection): imported
 * bindings cost that loop a fifth of its speed.
 */

const BACKSLASH = 0x5c
const LOWER_U = 0x75
const LOWER_E = 0x65
const UPPER_E = 0x45

/** The value of the JSON string token spanning [start, end] (quotes included). */
export const stringValue = (body: Buffer, start: number, end: number, escaped: boolean): string =>
  escaped ? JSON.parse(body.toString("utf8", start, end + 1)) as string : body.toString("utf8", start + 1, end)

const VERSION = Buffer.from("version")
const TOKEN = Buffer.from("token")
const DATA = Buffer.from("data")
export type TopKey = "version" | "token" | "data" | ""

/** The top-level key whose string token spans [start, end]: one of the three the validator reads, or "". */
export const topKey = (body: Buffer, start: number, end: number, escaped: boolean): TopKey => {
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

/** The UTF-16 code unit of the `\uXXXX` escape at `at`, or -1 when there is none there. */
const unicodeEscape = (body: Buffer, at: number): number => {
  if (body[at] !== BACKSLASH || body[at + 1] !== LOWER_U) return -1
  const unit = Number.parseInt(body.toString("latin1", at + 2, at + 6), 16)
  return Number.isNaN(unit) ? -1 : unit
}

const isHighSurrogate = (unit: number) => unit >= 0xd800 && unit <= 0xdbff
const isLowSurrogate = (unit: number) => unit >= 0xdc00 && unit <= 0xdfff

/**
 * The valid string token spanning [start, end] holds an escaped lone surrogate: a high one not
 * followed by an escaped low one, or a low one on its own. (Raw surrogates cannot be in valid
 * UTF-8, which the validator checks first.)
 */
export const hasLoneSurrogate = (body: Buffer, start: number, end: number): boolean => {
  for (let j = start + 1; j < end; j++) {
    if (body[j] !== BACKSLASH) continue
    const unit = unicodeEscape(body, j)
    if (unit < 0) {
      j++ // a two-byte escape: skip its second byte, which may be a backslash
    } else if (isHighSurrogate(unit)) {
      if (!isLowSurrogate(unicodeEscape(body, j + 6))) return true
      j += 11
    } else if (isLowSurrogate(unit)) {
      return true
    } else {
      j += 5
    }
  }
  return false
}

/** Digits a number needs before its magnitude can pass a double's largest (about 1.8e308). */
const OVERFLOW_DIGITS = 309

/**
 * The valid number token spanning [start, end) is beyond a double's range (`1e400`). Only a
 * number with an exponent or 309 digits can be, so only those are converted to find out.
 */
export const overflows = (body: Buffer, start: number, end: number): boolean => {
  if (end - start < OVERFLOW_DIGITS) {
    let exponent = false
    for (let k = start; k < end; k++) if (body[k] === LOWER_E || body[k] === UPPER_E) exponent = true
    if (!exponent) return false
  }
  return !Number.isFinite(Number(body.toString("latin1", start, end)))
}
