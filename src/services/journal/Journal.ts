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
import { makeSegments } from "./Segments.js"
import { type Durable, makeWriter } from "./Writer.js"

export interface JournalShape {
  /** Admission waits for the journal (`DURABILITY=journal`). */
  readonly admits: boolean
  /** Writes are failing: intake answers 503 until a probe succeeds. */
  readonly failing: () => boolean
  /** A fresh record id. */
  readonly nextId: () => number
  /** Stages the lines record of a reserved job; `done(true)` once fsynced, `done(false)` if the write failed. */
  readonly appendLines: (job: Job, version: string, done: Durable) => void
  /** The batch record, fsynced; tried again about once a second while the journal fails. */
  readonly recordBatch: (id: number, key: string, codec: Codec, spans: ReadonlyArray<Span>) => Effect.Effect<void>
  /** The batch is stored or dead-lettered: once that is durable, its segments may go. */
  readonly settle: (id: number, spans: ReadonlyArray<Span>, outcome: Outcome) => void
  /** What the journal held at start, and when its reading began. */
  readonly recovered: Recovered
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
  metrics.setJournalProbe(segments.bytes)
  if (recovered.corruptRecords > 0) metrics.journalCorrupt(recovered.corruptRecords)

  const writer = yield* makeWriter(files, dir, recovered.nextSeq, recovered.previousEnd, segmentBytesFor(config.maxQueueBytes), segments, {
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
      return Effect.forEach(removable, (segment) => Effect.ignoreLogged(files.remove(segment.path)), { discard: true })
    })
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

  let lastId = recovered.nextId - 1
  /** Stages `frame` and waits for its fsync: true if it is durable. */
  const stageFrame = (frame: Buffer, id: number, lines: number, batches: number) =>
    Effect.async<boolean>((resume) =>
      writer.stage(frame.length, (out, at) => frame.copy(out, at), id, lines, batches, (durable) =>
        resume(Effect.succeed(durable)))
    )

  const recordBatch = (id: number, key: string, codec: Codec, spans: ReadonlyArray<Span>) =>
    Effect.suspend(() => {
      const frame = batchFrame(id, key, codec.compression, codec.level, spans)
      // Its lines are counted live where they were journaled; the record counts itself.
      return Effect.flatMap(stageFrame(frame, id, 0, 1), (durable) => durable ? Effect.void : Effect.fail("retry" as const))
    }).pipe(Effect.retry(RETRY_EVERY), Effect.orDie)

  const settle = (id: number, spans: ReadonlyArray<Span>, outcome: Outcome) => {
    const frame = settledFrame(id, outcome)
    const stageSettled = (): void =>
      writer.stage(frame.length, (out, at) => frame.copy(out, at), 0, 0, 0, (durable) => {
        if (durable) segments.settle(id, spans)
        else stageSettled()
      })
    stageSettled()
  }

  // Live records of damaged segments are written again, then those segments are set aside.
  if (recovered.carried.length > 0 || recovered.quarantine.length > 0) {
    const carried = yield* Effect.forEach(recovered.carried, (entry) =>
      stageFrame(entry.frame, 0, entry.lines, entry.batches).pipe(
        Effect.tap((durable) => durable ? Effect.sync(() => segments.moved(entry.id, writer.current()!)) : Effect.void)
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

  return Journal.of({
    admits: config.durability === "journal",
    failing: writer.failing,
    nextId: () => ++lastId,
    appendLines: (job, version, done) => {
      const bytes = linesFrameBytes(version, job.bytes)
      writer.stage(
        bytes,
        (out, at) =>
          writeLines(out, at, job.record, job.acceptedAt, job.count, version, job.slab.memory, job.start, job.bytes),
        job.record,
        job.count,
        0,
        done
      )
    },
    recordBatch,
    settle,
    recovered,
    startedAt
  })
})

export const JournalLive: Layer.Layer<Journal, JournalUnreadable, AppConfig | Metrics | JournalFiles> = Layer.scoped(
  Journal,
  make
)
