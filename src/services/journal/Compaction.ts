/**
 * Compaction: when the journal outgrows twice the queue's byte bound plus a segment because its
 * oldest segment is kept alive by a few records (a batch that is slow to store), those records are
 * copied into the current segment so the old one can go.
 *
 * A line record is copied whole, and its lines that are already settled are covered by a batch
 * record made for the purpose and settled at once, so that recovery never queues them again. Its
 * live lines must all be in recorded batches (whose spans are known); if some are still queued,
 * compaction waits a while and tries again.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { batchFrame, FORMAT_VERSION, settledFrame, type Span } from "../../domain/journal/Records.js"
import { scanSegment } from "../../domain/journal/Scan.js"
import type { JournalFilesShape } from "./JournalFiles.js"
import type { RecordKind, Segment, Segments } from "./Segments.js"
import type { Writer } from "./Writer.js"

const RETRY_AFTER_MILLIS = 1_000

export interface CompactionParts {
  readonly files: JournalFilesShape
  readonly segments: Segments
  readonly writer: Writer
  /** Spans of the recorded batches not yet settled, by batch id. */
  readonly unsettled: ReadonlyMap<number, ReadonlyArray<Span>>
  readonly nextId: () => number
  /** Journal bytes beyond which the oldest segment is compacted. */
  readonly boundBytes: number
  readonly scope: Scope.Scope
}

/** Lines of a record not in `live`, as spans. */
const deadSpans = (record: number, count: number, live: ReadonlyArray<Span>): Array<Span> => {
  const dead: Array<Span> = []
  let line = 0
  for (const span of [...live].sort((a, b) => a.line - b.line)) {
    if (span.line > line) dead.push({ record, line, count: span.line - line })
    line = Math.max(line, span.line + span.count)
  }
  if (line < count) dead.push({ record, line, count: count - line })
  return dead
}

export const makeCompaction = (parts: CompactionParts) => {
  const { files, segments, writer } = parts
  let running = false
  let notBefore = 0

  /** Copies the live records of `segment`; false when some of its lines are still queued. */
  const compact = (segment: Segment) =>
    Effect.gen(function*() {
      const file = yield* files.read(segment.path)
      const scan = scanSegment(file, FORMAT_VERSION, segment.bytes)
      if (scan._tag !== "Scanned") return false
      const liveSpans = new Map<number, Array<Span>>()
      for (const spans of parts.unsettled.values()) {
        for (const span of spans) {
          const list = liveSpans.get(span.record)
          if (list === undefined) liveSpans.set(span.record, [span])
          else list.push(span)
        }
      }
      const copies: Array<{ readonly id: number; readonly kind: RecordKind; readonly frames: ReadonlyArray<Buffer> }> = []
      for (const { at, end, record } of scan.records) {
        if (record._tag !== "Lines" && record._tag !== "Batch") continue
        if (segments.where(record.id) !== segment || segments.liveOf(record.id) <= 0) continue
        const frame = file.subarray(at, end)
        if (record._tag === "Batch") {
          copies.push({ id: record.id, kind: "batch", frames: [frame] })
          continue
        }
        const live = liveSpans.get(record.id) ?? []
        if (live.reduce((n, span) => n + span.count, 0) !== segments.liveOf(record.id)) return false
        const dead = deadSpans(record.id, record.count, live)
        const cover = parts.nextId()
        copies.push({
          id: record.id,
          kind: "lines",
          frames: dead.length === 0
            ? [frame]
            : [batchFrame(cover, "", "none", 0, dead), settledFrame(cover, "stored"), frame]
        })
      }
      const copied = yield* Effect.forEach(copies, ({ frames, id, kind }) =>
        Effect.async<boolean>((resume) =>
          frames.forEach((frame, i) =>
            writer.stage(frame.length, (out, at) => frame.copy(out, at), 0, kind, 0, (durable) => {
              if (i < frames.length - 1) return
              // In the callback, the segment just written is the current one.
              if (durable) segments.relocate(id, kind, segment, writer.current()!, 0)
              resume(Effect.succeed(durable))
            })
          )
        ), { concurrency: "unbounded" })
      return copied.every((durable) => durable)
    })

  return {
    /** After a write: compacts the oldest segment in the background when the journal is over its bound. */
    check: Effect.gen(function*() {
      const oldest = segments.list()[0]
      const now = yield* Clock.currentTimeMillis
      if (
        running || now < notBefore || oldest === undefined || oldest === writer.current() ||
        segments.bytes() <= parts.boundBytes
      ) return
      running = true
      yield* Effect.forkIn(
        compact(oldest).pipe(
          Effect.catchAll(() => Effect.succeed(false)),
          Effect.flatMap((done) =>
            Effect.flatMap(Clock.currentTimeMillis, (end) => {
              running = false
              if (!done) notBefore = end + RETRY_AFTER_MILLIS
              return done
                ? Effect.logInfo("journal segment compacted").pipe(Effect.annotateLogs({ segment: oldest.path }))
                : Effect.void
            })
          )
        ),
        parts.scope
      )
    })
  }
}
