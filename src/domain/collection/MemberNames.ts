/**
 * The member names of the objects open around the validator's position, to find a name given
 * twice in one object (an I-JSON rule: DuckDB refuses a whole file for one such payload).
 *
 * A small object's names are compared as bytes, and only names of the same length; an object
 * with many names, or one whose names hold escapes (`"a"` and `"\u0061"` are one name), keeps
 * them decoded in a Set, so a hostile object of thousands of names costs linear time. Each depth
 * has one frame, reused for every object opened there: a parse allocates per depth it reaches,
 * not per object or name.
 */
import { stringValue } from "./Tokens.js"

/** Names compared as bytes, at most: beyond, a Set. */
const SMALL = 16

class Frame {
  /** [start, end] of each name's token (quotes included), while compared as bytes. */
  readonly tokens: Array<number> = []
  names: Set<string> | undefined = undefined
}

const sameBytes = (body: Buffer, a: number, b: number, length: number): boolean => {
  for (let k = 0; k < length; k++) if (body[a + k] !== body[b + k]) return false
  return true
}

export class MemberNames {
  private readonly frames: Array<Frame> = []

  /** An object opens at `depth`. */
  open(depth: number): void {
    const frame = this.frames[depth]
    if (frame === undefined) {
      this.frames[depth] = new Frame()
    } else {
      frame.tokens.length = 0
      frame.names = undefined
    }
  }

  /**
   * The name token spanning [start, end] (quotes included) of the object open at `depth`; true
   * when that object already has the name.
   */
  repeats(depth: number, body: Buffer, start: number, end: number, escaped: boolean): boolean {
    const frame = this.frames[depth]!
    const tokens = frame.tokens
    if (frame.names === undefined && !escaped && tokens.length < 2 * SMALL) {
      const length = end - start
      for (let i = 0; i < tokens.length; i += 2) {
        if (tokens[i + 1]! - tokens[i]! === length && sameBytes(body, tokens[i]!, start, length)) return true
      }
      tokens.push(start, end)
      return false
    }
    const names = frame.names ?? this.decodeAll(frame, body)
    const name = stringValue(body, start, end, escaped)
    if (names.has(name)) return true
    names.add(name)
    return false
  }

  private decodeAll(frame: Frame, body: Buffer): Set<string> {
    const names = new Set<string>()
    for (let i = 0; i < frame.tokens.length; i += 2) {
      names.add(stringValue(body, frame.tokens[i]!, frame.tokens[i + 1]!, true))
    }
    frame.tokens.length = 0
    frame.names = names
    return names
  }
}
