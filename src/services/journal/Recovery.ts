/**
 * Reading the journal at start: every segment in order, the torn tail of the last one cut off,
 * segments with damaged records read around the damage and set aside for quarantine. What comes
 * out is what the queue must take up again: unsettled batches with their keys, codecs and lines
 * (a batch is rebuilt only when every line it names can be read: a partial one would overwrite a
 * stored object with fewer lines), and lines in no batch. Nothing here waits for the store.
 */
import { join } from "node:path"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type { Compression } from "../../domain/Codec.js"
import { FORMAT_VERSION, type JournalRecord, readHeader, type Span } from "../../domain/journal/Records.js"
import { type ScannedRecord, scanSegment } from "../../domain/journal/Scan.js"
import type { JournalFilesShape, JournalIoError } from "./JournalFiles.js"
import { newSegment, type RecordKind, type Segment } from "./Segments.js"

/** A segment of a format this version cannot read: the start stops rather than guess. */
export class JournalUnreadable extends Data.TaggedError("JournalUnreadable")<{
  readonly path: string
  readonly problem: string
}> {}

type LinesRecord = Extract<JournalRecord, { _tag: "Lines" }>
type BatchRecord = Extract<JournalRecord, { _tag: "Batch" }>

export interface RecoveredLines extends Span {
  readonly version: string
  readonly acceptedAt: number
  /** The lines, each ending in "\n". */
  readonly lines: Buffer
}

export interface RecoveredBatch {
  readonly id: number
  readonly key: string
  readonly compression: Compression
  readonly level: number
  readonly spans: ReadonlyArray<Span>
  readonly count: number
  readonly raw: Buffer
}

export interface Recovered {
  readonly batches: ReadonlyArray<RecoveredBatch>
  readonly unbatched: ReadonlyArray<RecoveredLines>
  /** Unsettled batches some of whose lines cannot be read. */
  readonly unreadable: ReadonlyArray<{ readonly id: number; readonly key: string; readonly spans: ReadonlyArray<Span> }>
  /** The segments kept, and the live records in them. */
  readonly segments: ReadonlyArray<Segment>
  readonly live: ReadonlyArray<LiveRecord>
  /** Live records of damaged segments, to be written again before those are set aside. */
  readonly carried: ReadonlyArray<
    { readonly id: number; readonly frame: Buffer; readonly kind: RecordKind; readonly count: number }
  >
  readonly quarantine: ReadonlyArray<string>
  readonly nextId: number
  readonly nextSeq: number
  readonly previousEnd: number
  readonly corruptRecords: number
}

const SEGMENT_NAME = /^(\d{10})\.journal$/

const LF = 0x0a

/** Where line `from` of `lines` starts and where line `from + count - 1` ends; undefined past the end. */
const lineRange = (lines: Buffer, from: number, count: number): readonly [number, number] | undefined => {
  let at = 0
  for (let k = 0; k < from; k++) {
    const next = lines.indexOf(LF, at)
    if (next < 0) return undefined
    at = next + 1
  }
  let end = at
  for (let k = 0; k < count; k++) {
    const next = lines.indexOf(LF, end)
    if (next < 0) return undefined
    end = next + 1
  }
  return [at, end]
}

interface Found {
  readonly scanned: ScannedRecord
  readonly segment: Segment
  readonly file: Buffer
  readonly damaged: boolean
  /** Copied into this segment from an older one (its id is below the segment's own). */
  readonly copy: boolean
}

/** A record recovery found live, and where: what the journal counts at start. */
export interface LiveRecord {
  readonly segment: Segment
  readonly id: number
  readonly kind: RecordKind
  readonly count: number
  readonly copy: boolean
}

export const recoverJournal = (
  files: JournalFilesShape,
  dir: string
): Effect.Effect<Recovered, JournalUnreadable | JournalIoError> =>
  Effect.gen(function*() {
    yield* files.mkdir(dir)
    const names = (yield* files.list(dir)).filter((name) => SEGMENT_NAME.test(name)).sort()
    const contents: Array<Buffer> = []
    for (const name of names) contents.push(yield* files.read(join(dir, name)))

    const lines = new Map<number, Found>()
    const batches = new Map<number, Found>()
    const settled = new Set<number>()
    const kept: Array<Segment> = []
    const quarantine: Array<string> = []
    let corruptRecords = 0
    let maxId = 0
    let previousEnd = 0
    // Ids of records written in a segment grow from one segment to the next; a lower one there
    // was copied from an older segment, and is counted where it is without moving the segment's
    // first id.
    let floor = 0

    for (let i = 0; i < names.length; i++) {
      const path = join(dir, names[i]!)
      const file = contents[i]!
      const seq = Number(SEGMENT_NAME.exec(names[i]!)![1])
      // The next segment's header says how long this one was when it took over, if it took over
      // from this one (a segment set aside leaves a gap in the numbers).
      const nextSeq = i + 1 < names.length ? Number(SEGMENT_NAME.exec(names[i + 1]!)![1]) : undefined
      const next = nextSeq === seq + 1 ? readHeader(contents[i + 1]!) : undefined
      const knownEnd = next?._tag === "Header" ? next.previousEnd : undefined
      const scan = scanSegment(file, FORMAT_VERSION, knownEnd)
      if (scan._tag === "UnknownFormat") {
        return yield* new JournalUnreadable({ path, problem: `segment format ${scan.format}; this version reads ${FORMAT_VERSION}` })
      }
      if (scan._tag === "NotASegment") {
        // A segment whose header never reached the disk held nothing acknowledged.
        if (i === names.length - 1 && file.length < 64) yield* files.remove(path)
        else quarantine.push(path)
        continue
      }
      const segment = newSegment(seq, path, scan.end)
      const damaged = scan.corrupt > 0
      corruptRecords += scan.corrupt
      if (damaged) {
        quarantine.push(path)
      } else {
        kept.push(segment)
        if (scan.end < file.length) yield* files.truncateFile(path, scan.end)
      }
      previousEnd = scan.end
      for (const scanned of scan.records) {
        const record = scanned.record
        if (record._tag === "Lines" || record._tag === "Batch") {
          const copy = record.id < floor
          const found: Found = { scanned, segment, file, damaged, copy }
          maxId = Math.max(maxId, record.id)
          if (!copy && record.id < segment.firstId) segment.firstId = record.id
          const into = record._tag === "Lines" ? lines : batches
          // A record copied forward may also be in the segment it was copied from: the first wins.
          if (!into.has(record.id)) into.set(record.id, found)
        } else if (record._tag === "Settled") settled.add(record.batch)
      }
      floor = maxId + 1
    }

    // Lines each batch names, settled or not, are spoken for: only the rest is queued again.
    const covered = new Map<number, Array<Span>>()
    const recovered: Array<RecoveredBatch> = []
    const unreadable: Array<{ id: number; key: string; spans: ReadonlyArray<Span> }> = []
    const carried: Array<{ id: number; frame: Buffer; kind: RecordKind; count: number }> = []
    // Live lines per line record: in a rebuilt batch, or in none.
    const liveLines = new Map<number, number>()
    const addLive = (id: number, count: number) => liveLines.set(id, (liveLines.get(id) ?? 0) + count)
    const live: Array<LiveRecord> = []
    const frameOf = (found: Found) => found.file.subarray(found.scanned.at, found.scanned.end)

    for (const [id, found] of batches) {
      const batch = found.scanned.record as BatchRecord
      for (const span of batch.spans) {
        const list = covered.get(span.record)
        if (list === undefined) covered.set(span.record, [span])
        else list.push(span)
      }
      if (settled.has(id)) continue
      const parts: Array<Buffer> = []
      for (const span of batch.spans) {
        const source = lines.get(span.record)
        if (source === undefined) break
        const record = source.scanned.record as LinesRecord
        const range = lineRange(record.lines, span.line, span.count)
        if (range === undefined) break
        parts.push(record.lines.subarray(range[0], range[1]))
      }
      if (parts.length < batch.spans.length) {
        unreadable.push({ id, key: batch.key, spans: batch.spans })
        continue
      }
      let count = 0
      for (const span of batch.spans) {
        addLive(span.record, span.count)
        count += span.count
      }
      if (found.damaged) carried.push({ id, frame: frameOf(found), kind: "batch", count: 1 })
      else live.push({ segment: found.segment, id, kind: "batch", count: 1, copy: found.copy })
      recovered.push({
        id,
        key: batch.key,
        compression: batch.compression,
        level: batch.level,
        spans: batch.spans,
        count,
        raw: Buffer.concat(parts)
      })
    }

    const unbatched: Array<RecoveredLines> = []
    for (const [id, found] of lines) {
      const record = found.scanned.record as LinesRecord
      const spans = (covered.get(id) ?? []).slice().sort((a, b) => a.line - b.line)
      let line = 0
      const free: Array<readonly [number, number]> = []
      for (const span of spans) {
        if (span.line > line) free.push([line, span.line - line])
        line = Math.max(line, span.line + span.count)
      }
      if (line < record.count) free.push([line, record.count - line])
      for (const [from, count] of free) {
        const range = lineRange(record.lines, from, count)
        if (range === undefined) continue
        unbatched.push({
          record: id,
          line: from,
          count,
          version: record.version,
          acceptedAt: record.acceptedAt,
          lines: record.lines.subarray(range[0], range[1])
        })
        addLive(id, count)
      }
    }
    for (const [id, count] of liveLines) {
      const found = lines.get(id)!
      if (found.damaged) carried.push({ id, frame: frameOf(found), kind: "lines", count })
      else live.push({ segment: found.segment, id, kind: "lines", count, copy: found.copy })
    }

    const lastSeq = names.length === 0 ? 0 : Number(SEGMENT_NAME.exec(names[names.length - 1]!)?.[1] ?? 0)
    return {
      batches: recovered,
      unbatched,
      unreadable,
      segments: kept,
      live,
      carried,
      quarantine,
      nextId: maxId + 1,
      nextSeq: lastSeq,
      previousEnd,
      corruptRecords
    }
  })
