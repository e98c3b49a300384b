/**
 * The job queue: the admission buffer (bounds, slabs, open batches, ledger), the timer of the
 * batch windows, `MAX_WORKERS` fibers that each take an offered batch, key it once and deliver it
 * (Delivery, Uploader), and the drain at shutdown. The parts are built here and nowhere else;
 * docs/ARCHITECTURE.md tells who owns what among them.
 *
 * Shutdown: the finalizer drains while the workers live, then interrupts them (in-flight uploads
 * are aborted) and dead-letters whatever was not stored, so that at every moment
 * accepted = stored + deadLettered + lost + queued + inFlight (the buffer's ledger).
 */
import { randomBytes } from "node:crypto"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import { type Batch, receiptsOf, spansOf } from "../domain/Batch.js"
import { type Codec, codecOf } from "../domain/Codec.js"
import { makeDrainRate } from "../domain/DrainRate.js"
import { objectKey } from "../domain/Keys.js"
import { type Pending, pending, settlePending } from "../domain/Pending.js"
import type { Arrival } from "../domain/Slabs.js"
import { AppConfig } from "./AppConfig.js"
import { type Ledger, makeAdmissionBuffer, type Refusal } from "./buffer/AdmissionBuffer.js"
import { makeBatchWindows } from "./delivery/BatchWindows.js"
import { makeDelivery } from "./delivery/Delivery.js"
import { makeUploader } from "./delivery/Uploader.js"
import { Journal } from "./journal/Journal.js"
import { requeueRecovered } from "./journal/Requeue.js"
import { makeReceiptDeadlines } from "./receipts/ReceiptDeadlines.js"
import { Metrics } from "./Metrics.js"
import { DeadLetter, ObjectStore } from "./ObjectStore.js"
import { Shutdown } from "./Shutdown.js"

export type Admission = "admitted" | "closed" | "journal_unavailable" | Refusal

export type QueueStats = Ledger

const make = Effect.gen(function*() {
  const config = yield* AppConfig
  const store = yield* ObjectStore
  const deadLetter = yield* DeadLetter
  const metrics = yield* Metrics
  const shutdown = yield* Shutdown
  const journal = yield* Journal
  const clock = yield* Effect.clock
  const uploader = yield* makeUploader(store, metrics, config)
  const codec = codecOf(config.objectCompression, config.objectCompressionLevel)
  const drainRate = makeDrainRate()
  // Offered batches, handed to one waiting worker each.
  const offered = yield* Queue.unbounded<Batch>()
  const windows = yield* makeBatchWindows
  const receipts = yield* makeReceiptDeadlines(config.ackTimeoutMs)
  const buffer = makeAdmissionBuffer(config, (batch) => offered.unsafeOffer(batch), windows.due)
  const unsettled = new Map<Batch, string>()
  const delivery = makeDelivery({
    buffer,
    uploader,
    deadLetter,
    metrics,
    drainRate,
    workers: config.maxWorkers,
    batchMaxBytes: config.batchMaxBytes,
    codec,
    journal,
    unsettled
  })

  const instance = randomBytes(4).toString("hex")
  let sequence = 0
  const keyOf = (partition: string, createdAt: number, { extension }: Codec) =>
    objectKey(config.s3Prefix, partition, createdAt, instance, ++sequence, extension)
  /**
   * Takes an offered batch and decides its key, once: from its partitions and when it opened (a
   * recovered batch comes keyed). With the journal, it names the journaled lines it holds.
   */
  const takeAndKey = (batch: Batch): string => {
    buffer.take(batch)
    batch.receipts = receiptsOf(batch.jobs)
    let key = batch.key
    if (key === undefined) {
      key = keyOf(batch.partition, batch.openedAt, codec)
      if (journal.admits) batch.spans = spansOf(batch.jobs)
    }
    unsettled.set(batch, key)
    return key
  }

  metrics.setQueueCapacity(config.maxQueue, config.maxQueueBytes)
  metrics.setQueueProbe({
    acceptedPayloads: () => buffer.ledger().accepted,
    queuedPayloads: () => buffer.ledger().queued,
    queuedBytes: () => buffer.ledger().queuedBytes,
    inFlightPayloads: () => buffer.ledger().inFlight
  })

  yield* requeueRecovered({
    journal,
    deadLetter,
    buffer,
    metrics,
    offer: (batch) => offered.unsafeOffer(batch),
    keyOf,
    codec,
    partitions: config.partitions,
    batchMaxItems: config.batchMaxItems,
    batchMaxBytes: config.batchMaxBytes
  }, journal.startedAt)

  // Layers are built uninterruptibly and a fork inherits that: without `interruptible` the
  // shutdown could never interrupt a worker stuck in an upload.
  yield* Effect.forkScoped(Effect.interruptible(windows.run(buffer)))
  yield* Effect.forkScoped(Effect.interruptible(receipts.run))
  // A batch taken from the queue is keyed before anything can interrupt the worker: the
  // shutdown then finds it among the unsettled, never in neither place. A defect (a bug, or zlib
  // failing) leaves its batch unsettled for the shutdown to dead-letter, and the worker goes on.
  const worker = Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(restore(Queue.take(offered)), (batch) => restore(delivery.deliver(batch, takeAndKey(batch))))
  ).pipe(
    Effect.catchAllDefect((defect) => Effect.logError("delivery defect: the batch waits for the shutdown", Cause.die(defect))),
    Effect.forever
  )
  const fibers: Array<Fiber.RuntimeFiber<never>> = []
  for (let i = 0; i < config.maxWorkers; i++) {
    fibers.push(yield* Effect.forkScoped(Effect.interruptible(worker).pipe(Effect.annotateLogs({ worker: i + 1 }))))
  }

  /** Waits until nothing is queued or in flight, or until the epoch millis `until`. True when drained. */
  const awaitIdle = (until: number) =>
    Effect.gen(function*() {
      buffer.offerAll() // batches whose window is still open go now
      const idle = yield* Deferred.make<void>()
      buffer.whenIdle(() => Deferred.unsafeDone(idle, Exit.void))
      const now = yield* Clock.currentTimeMillis
      // Callers run this in finalizers, which are uninterruptible: the wait must be made
      // interruptible or the timeout could not cut it short.
      const drained = yield* Effect.timeoutOption(
        Effect.interruptible(Deferred.await(idle)),
        Duration.millis(Math.max(0, until - now))
      )
      return Option.isSome(drained)
    })

  /** Everything not stored after the workers stopped: in-flight batches keep their key. */
  const deadLetterLeftovers = Effect.gen(function*() {
    for (const [batch, key] of [...unsettled]) yield* delivery.deadLetter(batch, key)
    buffer.offerAll()
    for (const batch of Chunk.toReadonlyArray(yield* Queue.takeAll(offered))) {
      if (!batch.taken) yield* delivery.deadLetter(batch, takeAndKey(batch))
    }
  })

  // Added after the workers were forked, so it runs before the scope interrupts them.
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      yield* shutdown.closeIntake
      yield* awaitIdle(yield* shutdown.drainUntil)
      yield* Fiber.interruptAll(fibers)
      // With the journal, what is not stored stays journaled for the next start.
      if (!journal.admits) yield* deadLetterLeftovers
      const { accepted, deadLettered, inFlight, lost, queued, recovered, stored } = buffer.ledger()
      const summary = { accepted, recovered, stored, deadLettered, journaled: queued + inFlight, lost }
      yield* Effect.logInfo("shutdown").pipe(Effect.annotateLogs(summary))
      yield* shutdown.complete(summary)
    })
  )

  return {
    /**
     * All-or-nothing admission of one collection's payloads: the answer now, or, with the journal,
     * a pending one, given once the fsync covering its record completes (or fails). Call it in one
     * JS turn: the bounds are checked and the lines reserved synchronously.
     */
    offer: (arrival: Arrival): Admission | Pending<Admission> => {
      if (!shutdown.intakeOpen()) return "closed"
      if (!journal.admits) {
        const now = clock.unsafeCurrentTimeMillis()
        const admission = buffer.admit(arrival, uploader.storeDown(), now)
        if (admission === "admitted" && arrival.receipt !== undefined) receipts.arm(arrival.receipt, now)
        return admission
      }
      const reserved = buffer.reserve(arrival, uploader.storeDown(), journal.nextId())
      if (typeof reserved === "string") return reserved
      if (journal.failing()) {
        buffer.release(reserved)
        return "journal_unavailable"
      }
      const waiting = pending<Admission>()
      journal.appendLines(reserved.job, reserved.version, (durable) => {
        if (durable) {
          const now = clock.unsafeCurrentTimeMillis()
          buffer.commit(reserved, now)
          // The wait for a receipt starts once the lines are durable.
          if (arrival.receipt !== undefined) receipts.arm(arrival.receipt, now)
        } else buffer.release(reserved)
        settlePending(waiting, durable ? "admitted" : "journal_unavailable")
      })
      return waiting
    },
    /** The journal refuses writes until a probe succeeds. */
    journalFailing: () => journal.admits && journal.failing(),
    /** The store breaker is open or probing. */
    storeDown: uploader.storeDown,
    breakerStatus: uploader.breakerStatus,
    awaitIdle,
    /** Answers every request still waiting for a receipt with 202: the drain has reached its end. */
    answerReceipts: receipts.answerAll,
    stats: (): QueueStats => buffer.ledger(),
    /** Seconds a refused client should wait: queue depth over the measured drain rate, 1–60. */
    retryAfterSeconds: (): number => {
      // The measured rate is stale while the breaker holds every batch.
      if (uploader.storeDown()) return 30
      const { inFlight, queued } = buffer.ledger()
      return drainRate.retryAfterSeconds(queued + inFlight)
    }
  } as const
})

export class JobQueue extends Effect.Service<JobQueue>()("s3-ingest/JobQueue", { scoped: make }) {}
