/**
 * The validator's scanners of numbers, literals and escapes, and the recorder of `data`
 * elements: each runs once per token or element, not once per byte of a string, so they can live
 * apart from the loop of domain/Collection.
 */

const QUOTE = 0x22
const BACKSLASH = 0x5c
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

export const TRUE = Buffer.from("true")
export const FALSE = Buffer.from("false")
export const NULL = Buffer.from("null")

const isDigit = (c: number) => c >= ZERO && c <= NINE
const isHex = (c: number) => isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)
const isWhitespace = (c: number) => c === SPACE || c === LF || c === CR || c === TAB

/** Index of the first byte after the escape sequence at `at` (a backslash), or -1. */
export const escapeEnd = (body: Buffer, at: number): number => {
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
export const numberEnd = (body: Buffer, start: number): number => {
  const length = body.length
  let i = start
  if (body[i] === MINUS) i++
  if (i >= length) return -1
  if (body[i] === ZERO) i++
  else if (isDigit(body[i]!)) while (i < length && isDigit(body[i]!)) i++
  else return -1
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

export const literalAt = (body: Buffer, at: number, literal: Buffer): boolean => {
  if (at + literal.length > body.length) return false
  for (let k = 0; k < literal.length; k++) if (body[at + k] !== literal[k]) return false
  return true
}

/**
 * Records in `spans` the element from `start` to the separator at `at`, trailing whitespace
 * excluded. True when `checkBreaks` and the element holds a line break.
 */
export const pushElement = (body: Buffer, spans: Array<number>, start: number, at: number, checkBreaks: boolean): boolean => {
  let end = at
  while (end > start && isWhitespace(body[end - 1]!)) end--
  spans.push(start, end)
  if (checkBreaks) for (let k = start; k < end; k++) if (body[k] === LF || body[k] === CR) return true
  return false
}
