/**
 * Reading a segment back. A crash can cut the last group write anywhere: the frames after the
 * last whole one are a torn tail, never acknowledged, and are cut off. A bad frame followed by a
 * good one is something else (the disk changed bytes that were acknowledged): the segment is
 * corrupt, and every good frame in it, before and after the damage, is still read.
 */
import { HEADER_BYTES, type JournalRecord, readFrame, readHeader } from "./Records.js"

export interface ScannedRecord {
  readonly record: JournalRecord
  readonly at: number
  readonly end: number
}

export type Scan =
  | { readonly _tag: "NotASegment" }
  | { readonly _tag: "UnknownFormat"; readonly format: number }
  | {
    readonly _tag: "Scanned"
    /** The length of the segment the one before this was cut to when this one started. */
    readonly previousEnd: number
    readonly records: ReadonlyArray<ScannedRecord>
    /** Where the good frames end: the length to cut the file to. */
    readonly end: number
    /** Bad frames with a good one after them. */
    readonly corrupt: number
  }

/** The next offset after `from` where a good frame starts, before `limit`. */
const nextFrame = (file: Buffer, from: number): number | undefined => {
  for (let at = from; at < file.length; at++) if (readFrame(file, at) !== undefined) return at
  return undefined
}

/**
 * Scans a segment. `knownEnd`: how long the next segment's header says this one was, when there
 * is a next one; bytes beyond it were refused by a failed write and are not read. Within a known
 * end every bad frame is damage; in the last segment a bad frame with nothing good after it is
 * the torn tail.
 */
export const scanSegment = (file: Buffer, format: number, knownEnd: number | undefined): Scan => {
  const header = readHeader(file)
  if (header._tag === "NotAHeader") return { _tag: "NotASegment" }
  if (header.format !== format) return { _tag: "UnknownFormat", format: header.format }
  const bytes = knownEnd === undefined ? file : file.subarray(0, Math.min(knownEnd, file.length))
  const records: Array<ScannedRecord> = []
  let corrupt = 0
  let at = HEADER_BYTES
  let end = HEADER_BYTES
  while (at < bytes.length) {
    const frame = readFrame(bytes, at)
    if (frame !== undefined) {
      records.push({ record: frame.record, at, end: frame.end })
      at = end = frame.end
      continue
    }
    const next = nextFrame(bytes, at + 1)
    if (next === undefined) {
      if (knownEnd !== undefined) corrupt++
      break
    }
    corrupt++
    at = next
  }
  return { _tag: "Scanned", previousEnd: header.previousEnd, records, end, corrupt }
}
