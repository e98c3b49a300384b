/**
 * The write-ahead journal in `DATA_DIR/journal/`: what the queue holds is on disk before it is
 * acknowledged, and which batch holds which lines is on disk before the batch's bytes leave the
 * process, so a crash loses nothing acknowledged and recovery uploads every batch again under its
 * own key with its own lines. docs/ARCHITECTURE.md (The journal) tells the whole protocol.
 *
 * With `DURABILITY=memory` admission does not write to it, but a journal left by an earlier run is
 * still recovered, and the batches recovered from it are recorded and settled here.
 */
import { join } from "node:path"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import type { Job } from "../../domain/Batch.js"
import type { Codec } from "../../domain/Codec.js"
import { batchFrame, linesFrameBytes, type Outcome, settledFrame, type Span, writeLines } from "../../domain/journal/Records.js"
import { AppConfig } from "../AppConfig.js"
import { Metrics } from "../Metrics.js"
import { JournalFiles } from "./JournalFiles.js"
import { type Recovered, recoverJournal, JournalUnreadable } from "./Recovery.js"
import { makeCompaction } from "./Compaction.js"
import { makeSegments, setLive } from "./Segments.js"
import { type Durable, makeWriter } from "./Writer.js"

export interface JournalShape {
  /** Admission waits for the journal (`DURABILITY=journal`). */
  readonly admits: boolean
  /** Writes are failing: intake answers 503 until a probe succeeds. */
  readonly failing: () => boolean
  /** A fresh id for a lines record, staged in the same turn. */
  readonly nextId: () => number
  /** Stages the lines record of a reserved job; `done(true)` once fsynced, `done(false)` if the write failed. */
  readonly appendLines: (job: Job, version: string, done: Durable) => void
  /** Writes a batch record and waits for its fsync (again about once a second while the journal fails); its id. */
  readonly recordBatch: (key: string, codec: Codec, spans: ReadonlyArray<Span>) => Effect.Effect<number>
  /** The batch is stored or dead-lettered: once that is durable, its segments may go. */
  readonly settle: (id: number, spans: ReadonlyArray<Span>, outcome: Outcome) => void
  /**
   * What the journal held at start (once: the lines it holds are let go with it), and when its
   * reading began.
   */
  readonly takeRecovered: () => Recovered
  readonly startedAt: number
}

export class Journal extends Context.Tag("s3-ingest/Journal")<Journal, JournalShape>() {}

const MIB = 1024 * 1024
const RETRY_EVERY = Schedule.spaced(Duration.seconds(1))

/** Segments of a quarter of the queue's byte bound, 1–64 MiB: a handful of files to delete from. */
const segmentBytesFor = (maxQueueBytes: number) => Math.min(64 * MIB, Math.max(MIB, Math.floor(maxQueueBytes / 4)))

const make = Effect.gen(function*() {
  const config = yield* AppConfig
  const metrics = yield* Metrics
  const files = yield* JournalFiles
  const dir = join(config.dataDir, "journal")
  const corruptDir = join(config.dataDir, "journal-corrupt")
  const startedAt = yield* Clock.currentTimeMillis
  const recovered = yield* recoverJournal(files, dir).pipe(
    Effect.catchTag("JournalIoError", (error) =>
      Effect.fail(new JournalUnreadable({ path: error.path, problem: `${error.op} failed (${error.code ?? "unknown"})` })))
  )
  const segments = makeSegments()
  for (const segment of recovered.segments) segments.add(segment)
  for (const record of recovered.live) {
    if (record.copy) segments.relocate(record.id, record.kind, undefined, record.segment, record.count)
    else setLive(record.segment, record.id, record.kind, record.count)
  }
  metrics.setJournalProbe(segments.bytes)
  if (recovered.corruptRecords > 0) metrics.journalCorrupt(recovered.corruptRecords)

  const segmentBytes = segmentBytesFor(config.maxQueueBytes)
  let lastId = recovered.nextId - 1
  const nextId = () => ++lastId
  // Spans of recorded batches not yet settled: what compaction must keep.
  const unsettled = new Map<number, ReadonlyArray<Span>>()
  for (const batch of recovered.batches) unsettled.set(batch.id, batch.spans)
  let compaction: { readonly check: Effect.Effect<void> } | undefined

  const writer = yield* makeWriter(files, dir, recovered.nextSeq, recovered.previousEnd, segmentBytes, segments, {
    fsyncSeconds: metrics.journalFsync,
    writeError: (error) =>
      Effect.sync(() => metrics.journalWriteError()).pipe(
        Effect.zipRight(Effect.logError("journal write failed: refusing intake until a probe succeeds").pipe(
          Effect.annotateLogs({ op: error.op, code: error.code ?? "unknown" })
        ))
      ),
    recovered: Effect.logInfo("journal writable again"),
    afterWrite: Effect.suspend(() => {
      const removable = segments.takeRemovable(writer.current())
      return Effect.forEach(removable, (segment) => Effect.ignoreLogged(files.remove(segment.path)), { discard: true }).pipe(
        Effect.zipRight(compaction?.check ?? Effect.void)
      )
    })
  })
  compaction = makeCompaction({
    files,
    segments,
    writer,
    unsettled,
    nextId,
    // About twice the queue's bound plus a segment (what settled records and one open segment add).
    boundBytes: 2 * config.maxQueueBytes + segmentBytes,
    scope: yield* Effect.scope
  })
  yield* Effect.forkScoped(Effect.interruptible(writer.run))
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      // Settled records staged by the last deliveries reach the disk before the file closes.
      const quiet = yield* Deferred.make<void>()
      writer.whenQuiet(() => Deferred.unsafeDone(quiet, Exit.void))
      yield* Effect.timeoutOption(Effect.interruptible(Deferred.await(quiet)), Duration.seconds(2))
      yield* writer.close
    })
  )

  const copy = (frame: Buffer) => (out: Buffer, at: number) => void frame.copy(out, at)

  /** The batch record, fsynced; its id is taken as it is staged, so ids stay in write order. */
  const recordBatch = (key: string, codec: Codec, spans: ReadonlyArray<Span>) =>
    Effect.async<number | undefined>((resume) => {
      const id = nextId()
      const frame = batchFrame(id, key, codec.compression, codec.level, spans)
      writer.stage(frame.length, copy(frame), id, "batch", 1, (durable) => {
        if (durable) unsettled.set(id, spans)
        resume(Effect.succeed(durable ? id : undefined))
      })
    }).pipe(
      Effect.flatMap((id) => id === undefined ? Effect.fail("not durable" as const) : Effect.succeed(id)),
      Effect.retry(RETRY_EVERY),
      Effect.orDie
    )

  const settle = (id: number, spans: ReadonlyArray<Span>, outcome: Outcome) => {
    const frame = settledFrame(id, outcome)
    const stageSettled = (): void =>
      writer.stage(frame.length, copy(frame), 0, "batch", 0, (durable) => {
        if (!durable) return stageSettled()
        unsettled.delete(id)
        segments.settle(id, spans)
      })
    stageSettled()
  }

  // Live records of damaged segments are written again, then those segments are set aside.
  if (recovered.carried.length > 0 || recovered.quarantine.length > 0) {
    const carried = yield* Effect.forEach(recovered.carried, (entry) =>
      Effect.async<boolean>((resume) =>
        writer.stage(entry.frame.length, copy(entry.frame), 0, entry.kind, 0, (durable) => {
          if (durable) segments.relocate(entry.id, entry.kind, undefined, writer.current()!, entry.count)
          resume(Effect.succeed(durable))
        })
      ), { concurrency: "unbounded" })
    if (carried.every((durable) => durable)) {
      yield* files.mkdir(corruptDir).pipe(Effect.ignoreLogged)
      for (const path of recovered.quarantine) {
        yield* Effect.logError("journal segment damaged: set aside").pipe(Effect.annotateLogs({ segment: path, to: corruptDir }))
        yield* files.rename(path, join(corruptDir, path.slice(dir.length + 1))).pipe(Effect.ignoreLogged)
      }
    } else {
      yield* Effect.logError("journal segments damaged, and their records could not be written again: left in place")
    }
  }

  let found: Recovered = recovered
  return Journal.of({
    admits: config.durability === "journal",
    failing: writer.failing,
    nextId,
    appendLines: (job, version, done) =>
      writer.stage(
        linesFrameBytes(version, job.bytes),
        (out, at) =>
          void writeLines(out, at, job.record, job.acceptedAt, job.count, version, job.slab.memory, job.start, job.bytes),
        job.record,
        "lines",
        job.count,
        done
      ),
    recordBatch,
    settle,
    takeRecovered: () => {
      const taken = found
      found = { ...found, batches: [], unbatched: [], unreadable: [], carried: [], live: [] }
      return taken
    },
    startedAt
  })
})

export const JournalLive: Layer.Layer<Journal, JournalUnreadable, AppConfig | Metrics | JournalFiles> = Layer.scoped(
  Journal,
  make
)
