/**
 * The journal's bytes. A segment file starts with a header (magic, format version, and how long
 * the segment before it was when this one replaced it) and holds framed records:
 *
 *   length u32 | crc32 of the body u32 | body: type u8, fields
 *
 * Integers are little-endian; ids and times are 48-bit. Four records exist:
 * - lines: a collection's NDJSON lines as admitted (id, acceptance time, line count, `{version}`);
 * - batch: a batch about to leave the process (id, key, codec, level, and which lines: spans of
 *   line records);
 * - settled: a batch stored or dead-lettered;
 * - probe: written while the journal checks that it can write again; recovery skips it.
 */
import { crc32 } from "node:zlib"
import type { Compression } from "../Codec.js"

export const FORMAT_VERSION = 1
const MAGIC = 0x4a493353 // "S3IJ"
export const HEADER_BYTES = 16
export const FRAME_BYTES = 8

const LINES = 1
const BATCH = 2
const SETTLED = 3
const PROBE = 4

/** `count` lines of line record `record`, from its line `line` on. */
export interface Span {
  readonly record: number
  readonly line: number
  readonly count: number
}

export type Outcome = "stored" | "deadLettered" | "lost"
const OUTCOMES: ReadonlyArray<Outcome> = ["stored", "deadLettered", "lost"]

export type JournalRecord =
  | {
    readonly _tag: "Lines"
    readonly id: number
    readonly acceptedAt: number
    readonly count: number
    readonly version: string
    /** `count` NDJSON lines, each ending in "\n". */
    readonly lines: Buffer
  }
  | {
    readonly _tag: "Batch"
    readonly id: number
    readonly key: string
    readonly compression: Compression
    readonly level: number
    readonly spans: ReadonlyArray<Span>
  }
  | { readonly _tag: "Settled"; readonly batch: number; readonly outcome: Outcome }
  | { readonly _tag: "Probe" }

export const segmentHeader = (previousEnd: number): Buffer => {
  const header = Buffer.alloc(HEADER_BYTES)
  header.writeUInt32LE(MAGIC, 0)
  header.writeUInt16LE(FORMAT_VERSION, 4)
  header.writeUIntLE(previousEnd, 6, 6)
  header.writeUInt32LE(crc32(header.subarray(0, 12)), 12)
  return header
}

export type Header =
  | { readonly _tag: "Header"; readonly format: number; readonly previousEnd: number }
  | { readonly _tag: "NotAHeader" }

export const readHeader = (file: Buffer): Header => {
  if (file.length < HEADER_BYTES || file.readUInt32LE(0) !== MAGIC) return { _tag: "NotAHeader" }
  if (file.readUInt32LE(12) !== crc32(file.subarray(0, 12))) return { _tag: "NotAHeader" }
  return { _tag: "Header", format: file.readUInt16LE(4), previousEnd: file.readUIntLE(6, 6) }
}

/** Bytes of a lines record's frame. */
export const linesFrameBytes = (version: string, lineBytes: number): number =>
  FRAME_BYTES + 18 + Buffer.byteLength(version) + lineBytes

/**
 * Writes a lines record at `at` of `out` (which has room for `linesFrameBytes`), its lines copied
 * from `source[start, start + bytes)`; returns the end.
 */
export const writeLines = (
  out: Buffer,
  at: number,
  id: number,
  acceptedAt: number,
  count: number,
  version: string,
  source: Buffer,
  start: number,
  bytes: number
): number => {
  const body = at + FRAME_BYTES
  out[body] = LINES
  out.writeUIntLE(id, body + 1, 6)
  out.writeUIntLE(acceptedAt, body + 7, 6)
  out.writeUInt32LE(count, body + 13)
  const versionBytes = out.write(version, body + 18, "latin1")
  out[body + 17] = versionBytes
  source.copy(out, body + 18 + versionBytes, start, start + bytes)
  return seal(out, at, body + 18 + versionBytes + bytes)
}

/** Frames the body that runs from `at + FRAME_BYTES` to `end`. */
const seal = (out: Buffer, at: number, end: number): number => {
  const body = out.subarray(at + FRAME_BYTES, end)
  out.writeUInt32LE(body.length, at)
  out.writeUInt32LE(crc32(body), at + 4)
  return end
}

const SPAN_BYTES = 14

export const batchFrame = (
  id: number,
  key: string,
  compression: Compression,
  level: number,
  spans: ReadonlyArray<Span>
): Buffer => {
  const keyBytes = Buffer.byteLength(key)
  const out = Buffer.allocUnsafe(FRAME_BYTES + 15 + keyBytes + spans.length * SPAN_BYTES)
  const body = FRAME_BYTES
  out[body] = BATCH
  out.writeUIntLE(id, body + 1, 6)
  out[body + 7] = compression === "gzip" ? 1 : 0
  out[body + 8] = level
  out.writeUInt16LE(keyBytes, body + 9)
  out.write(key, body + 11, "utf8")
  let at = body + 11 + keyBytes
  out.writeUInt32LE(spans.length, at)
  at += 4
  for (const span of spans) {
    out.writeUIntLE(span.record, at, 6)
    out.writeUInt32LE(span.line, at + 6)
    out.writeUInt32LE(span.count, at + 10)
    at += SPAN_BYTES
  }
  seal(out, 0, at)
  return out
}

export const settledFrame = (batch: number, outcome: Outcome): Buffer => {
  const out = Buffer.allocUnsafe(FRAME_BYTES + 8)
  out[FRAME_BYTES] = SETTLED
  out.writeUIntLE(batch, FRAME_BYTES + 1, 6)
  out[FRAME_BYTES + 7] = OUTCOMES.indexOf(outcome)
  seal(out, 0, FRAME_BYTES + 8)
  return out
}

export const probeFrame = (now: number): Buffer => {
  const out = Buffer.allocUnsafe(FRAME_BYTES + 7)
  out[FRAME_BYTES] = PROBE
  out.writeUIntLE(now, FRAME_BYTES + 1, 6)
  seal(out, 0, FRAME_BYTES + 7)
  return out
}

/** The record whose frame starts at `at`, if the frame is whole, its checksum right and its body well-formed. */
export const readFrame = (file: Buffer, at: number): { readonly record: JournalRecord; readonly end: number } | undefined => {
  if (at + FRAME_BYTES > file.length) return undefined
  const length = file.readUInt32LE(at)
  const end = at + FRAME_BYTES + length
  if (length === 0 || end > file.length) return undefined
  const body = file.subarray(at + FRAME_BYTES, end)
  if (crc32(body) !== file.readUInt32LE(at + 4)) return undefined
  const record = decodeBody(body)
  return record === undefined ? undefined : { record, end }
}

const decodeBody = (body: Buffer): JournalRecord | undefined => {
  try {
    switch (body[0]) {
      case LINES: {
        const versionBytes = body[17]!
        return {
          _tag: "Lines",
          id: body.readUIntLE(1, 6),
          acceptedAt: body.readUIntLE(7, 6),
          count: body.readUInt32LE(13),
          version: body.toString("latin1", 18, 18 + versionBytes),
          lines: body.subarray(18 + versionBytes)
        }
      }
      case BATCH: {
        const keyBytes = body.readUInt16LE(9)
        let at = 11 + keyBytes
        const count = body.readUInt32LE(at)
        at += 4
        if (at + count * SPAN_BYTES !== body.length) return undefined
        const spans: Array<Span> = []
        for (let i = 0; i < count; i++, at += SPAN_BYTES) {
          spans.push({ record: body.readUIntLE(at, 6), line: body.readUInt32LE(at + 6), count: body.readUInt32LE(at + 10) })
        }
        return {
          _tag: "Batch",
          id: body.readUIntLE(1, 6),
          compression: body[7] === 1 ? "gzip" : "none",
          level: body[8]!,
          key: body.toString("utf8", 11, 11 + keyBytes),
          spans
        }
      }
      case SETTLED: {
        const outcome = OUTCOMES[body[7]!]
        return outcome === undefined ? undefined : { _tag: "Settled", batch: body.readUIntLE(1, 6), outcome }
      }
      case PROBE:
        return { _tag: "Probe" }
      default:
        return undefined
    }
  } catch {
    // A read past the body's end: a frame whose checksum matched by chance over garbage.
    return undefined
  }
}
