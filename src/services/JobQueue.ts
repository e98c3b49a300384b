/**
 * The bounded job queue and its workers.
 *
 * A job is the payloads of one request (or of consecutive requests accepted in the same
 * millisecond), already validated, as NDJSON lines in the queue's slabs (domain/Batch,
 * domain/Slabs). Admission is synchronous and all-or-nothing: capacity (payloads and bytes) is
 * checked and the lines copied and offered in one JS turn, so no fiber can interleave.
 * `MAX_WORKERS` fibers, forked in this layer's scope, each build their own batch (closed on items,
 * bytes or wait), key it once, and hand it to the Uploader; a batch that cannot be stored is
 * dead-lettered under its key.
 *
 * Shutdown: the finalizer drains while the workers live, then interrupts them (in-flight
 * uploads are aborted) and dead-letters whatever was not stored, so that at every moment
 * accepted = stored + deadLettered + lost + queued + inFlight.
 */
import { randomBytes } from "node:crypto"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import {
  addToBatch,
  batchesOf,
  encodeBatch,
  type Job,
  makeBodyBuffers,
  type OpenBatch,
  payloadCount
} from "../domain/Batch.js"
import { objectKey } from "../domain/Keys.js"
import { type Arrival, makeSlabs } from "../domain/Slabs.js"
import { AppConfig } from "./AppConfig.js"
import { beginShutdown, Lifecycle } from "./Lifecycle.js"
import { Metrics } from "./Metrics.js"
import { DeadLetter, ObjectStore, type StoreError, storeErrorFields } from "./ObjectStore.js"
import { RingBuffer } from "./RingBuffer.js"
import { makeUploader } from "./Uploader.js"

export type Admission = "admitted" | "full" | "shedding" | "too_large" | "closed"

export interface QueueStats {
  readonly accepted: number
  readonly stored: number
  readonly deadLettered: number
  readonly lost: number
  readonly queued: number
  readonly queuedBytes: number
  readonly inFlight: number
}

/** What one worker holds: the batch it is building, or uploading (then as its encoded body). */
interface WorkerHold extends OpenBatch {
  key: string | undefined
  /** A job did not fit: the batch goes as it is. */
  full: boolean
  encoded: Buffer | undefined
}

/**
 * Size of the reused object-body buffers: a batch of 1,000 payloads of 1–2 KB fits. Memory is
 * resident only as far as bodies have filled it.
 */
const BODY_BUFFER_BYTES = 2 * 1024 * 1024

/**
 * Size of the slabs queued lines are copied into, and how many empty ones are kept: under a steady
 * flood a few cycle; a queue filled to its bound holds `MAX_QUEUE_BYTES` of them while it lasts.
 */
const SLAB_BYTES = 1024 * 1024
const IDLE_SLABS = 4

/** Time kept back from the shutdown budget for closing the listener and dead-lettering. */
export const SHUTDOWN_RESERVE_MILLIS = 2_000

const make = Effect.gen(function*() {
  const config = yield* AppConfig
  const store = yield* ObjectStore
  const deadLetter = yield* DeadLetter
  const metrics = yield* Metrics
  const lifecycle = yield* Lifecycle
  const uploader = yield* makeUploader(store, metrics, config)

  // A job holds at least one payload, so `maxQueue` slots are never all taken: admission bounds
  // the payloads before it offers.
  const ring = new RingBuffer<Job>(config.maxQueue)
  const queue = yield* Queue.make(ring, Queue.backPressureStrategy())
  // One buffer per worker at most: a batch's body is in one until the batch is settled.
  const bodies = makeBodyBuffers(Math.min(config.batchMaxBytes, BODY_BUFFER_BYTES), config.maxWorkers)
  const slabs = makeSlabs(Math.min(config.maxQueueBytes, SLAB_BYTES), IDLE_SLABS)
  const instance = randomBytes(4).toString("hex")
  let sequence = 0

  let accepted = 0
  let stored = 0
  let deadLettered = 0
  let lost = 0
  let queuedBytes = 0
  let inFlight = 0
  // Open exactly when nothing is queued or in flight: the drain waits on it.
  const idle = yield* Effect.makeLatch(true)
  // Opened by admission once enough lines are queued to fill the batch being collected, so a
  // busy edge does not wake the collector (and arm a timer) for every request.
  const arrivals = yield* Effect.makeLatch(false)
  let wakeAtPayloads = Number.POSITIVE_INFINITY
  let wakeAtBytes = Number.POSITIVE_INFINITY
  // When the waiting collector's batch is due (epoch millis), and open while one waits:
  // `closeDueBatches` opens `arrivals` then.
  let dueAt = Number.POSITIVE_INFINITY
  const waiting = yield* Effect.makeLatch(false)
  const holds: Array<WorkerHold> = []

  // Drain rate for Retry-After: payloads stored per second, smoothed over whole seconds.
  let rateSecond = 0
  let storedThisSecond = 0
  let storedPerSecond = 0
  const recordStoredRate = (count: number, now: number) => {
    const second = Math.floor(now / 1000)
    if (second !== rateSecond) {
      const gap = second - rateSecond
      storedPerSecond = gap === 1 ? (storedPerSecond + storedThisSecond) / 2 : storedThisSecond / gap
      rateSecond = second
      storedThisSecond = 0
    }
    storedThisSecond += count
  }

  // Counted here rather than read from the queue: a job handed straight to a waiting worker is
  // in neither the queue nor a batch until that worker runs, and the books must balance anyway.
  let queued = 0
  let queuedJobs = 0
  // Jobs, or their ends, taken from the queue that the batch being collected had no room for.
  // Only the collector touches them, and it takes them before the queue: a collection split
  // across batches keeps its order, and no line waits on a worker that is busy uploading.
  const overflow: Array<Job> = []
  const queuedPayloads = () => queued

  metrics.setQueueProbe({
    acceptedPayloads: () => accepted,
    queuedPayloads,
    queuedBytes: () => queuedBytes,
    inFlightPayloads: () => inFlight
  })

  const settle = (count: number) => {
    inFlight -= count
    if (inFlight === 0 && queuedPayloads() === 0) idle.unsafeOpen()
  }

  /** All-or-nothing admission of one collection's payloads. Synchronous: call it in one JS turn. */
  const offer = (arrival: Arrival): Admission => {
    if (!lifecycle.intakeOpen) return "closed"
    const { bytes, count } = arrival
    if (count > config.maxQueue || bytes > config.maxQueueBytes) return "too_large"
    if (queuedPayloads() + count > config.maxQueue || queuedBytes + bytes > config.maxQueueBytes) return "full"
    // While the store is down, keep the head-room above the high-water mark for when it returns.
    if (
      uploader.storeDown() &&
      (queuedPayloads() + count > config.maxQueue * config.shedHighWater ||
        queuedBytes + bytes > config.maxQueueBytes * config.shedHighWater)
    ) return "shedding"
    // Requests accepted in the same millisecond, one after another, share one queue entry: the
    // lines follow each other in the slab and are delivered with the same delay. Under a flood of
    // one-payload requests that spares most of them a job, an offer and a take.
    const tail = ring.last()
    const extended = tail === undefined ? undefined : slabs.append(tail, arrival)
    if (extended !== undefined) {
      ring.replaceLast(extended)
    } else {
      queue.unsafeOffer(slabs.write(arrival))
      queuedJobs++
    }
    queued += count
    queuedBytes += bytes
    accepted += count
    idle.unsafeClose()
    if (queuedPayloads() >= wakeAtPayloads || queuedBytes >= wakeAtBytes) arrivals.unsafeOpen()
    return "admitted"
  }

  /** Puts what fits of each job in the batch, in order; the rest goes to the overflow. */
  const take = (hold: WorkerHold, jobs: ReadonlyArray<Job>) => {
    for (const job of jobs) {
      if (hold.full) {
        overflow.push(job)
        continue
      }
      const { bytes, lines } = hold
      const rest = addToBatch(hold, job, config.batchMaxItems, config.batchMaxBytes)
      queued -= hold.lines - lines
      queuedBytes -= hold.bytes - bytes
      inFlight += hold.lines - lines
      if (rest === undefined) {
        queuedJobs--
      } else {
        overflow.push(rest)
        hold.full = true
      }
    }
  }

  const isFull = (hold: WorkerHold) =>
    hold.full || hold.lines >= config.batchMaxItems || hold.bytes >= config.batchMaxBytes

  /**
   * About as many jobs as the batch has room for, judged by the queued jobs' mean size: a job is
   * a whole collection, so taking as many jobs as there is room for lines would overshoot.
   */
  const jobsWanted = (hold: WorkerHold) =>
    queued === 0 ? 1 : Math.max(
      1,
      Math.min(
        Math.ceil(((config.batchMaxItems - hold.lines) * queuedJobs) / queued),
        Math.ceil(((config.batchMaxBytes - hold.bytes) * queuedJobs) / queuedBytes)
      )
    )

  /** Fills a batch until it is full, its wait has passed since its first line, or intake closed. */
  const fill = (hold: WorkerHold, openedAt: number) =>
    Effect.gen(function*() {
      const closesAt = openedAt + config.batchMaxWaitMs
      while (!isFull(hold)) {
        if (overflow.length > 0) {
          take(hold, overflow.splice(0))
          continue
        }
        const more = yield* Queue.takeUpTo(queue, jobsWanted(hold))
        if (more.length > 0) {
          take(hold, Chunk.toReadonlyArray(more))
          continue
        }
        const now = yield* Clock.currentTimeMillis
        if (now >= closesAt || !lifecycle.intakeOpen) return
        // Arm the wake-up in the same turn as the check, so an admission between the two
        // cannot be missed; then wait for a full batch's worth of lines or the batch's deadline.
        const wait = yield* Effect.sync(() => {
          if (queuedPayloads() > 0) return false
          wakeAtPayloads = config.batchMaxItems - hold.lines
          wakeAtBytes = config.batchMaxBytes - hold.bytes
          arrivals.unsafeClose()
          return true
        })
        if (wait) {
          dueAt = closesAt
          waiting.unsafeOpen()
          yield* arrivals.await
          waiting.unsafeClose()
          dueAt = Number.POSITIVE_INFINITY
          wakeAtPayloads = Number.POSITIVE_INFINITY
          wakeAtBytes = Number.POSITIVE_INFINITY
        }
      }
    })

  /** `why`: the fields of the log line that say why the batch was not stored. */
  const deadLetterBatch = (key: string, count: number, body: Uint8Array, why: Record<string, unknown>) =>
    deadLetter.write(key, body).pipe(
      Effect.matchEffect({
        onSuccess: () =>
          Effect.sync(() => {
            deadLettered += count
            metrics.payloadsDeadLettered.inc(count)
          }).pipe(
            Effect.zipRight(
              Effect.logWarning("batch dead-lettered").pipe(
                Effect.annotateLogs({ key, payloads: count, ...why })
              )
            )
          ),
        onFailure: (error: StoreError) =>
          Effect.sync(() => {
            lost += count
            metrics.payloadsLost.inc(count)
          }).pipe(
            Effect.zipRight(
              Effect.logError("dead-letter write failed: payloads lost").pipe(
                Effect.annotateLogs({ key, payloads: count, reason: error.reason })
              )
            )
          )
      }),
      Effect.ensuring(Effect.sync(() => settle(count)))
    )

  /** `acceptances`: when each request of the batch was acknowledged, and its payload count. */
  const markStored = (count: number, acceptances: ReadonlyArray<number>) =>
    Effect.map(Clock.currentTimeMillis, (now) => {
      stored += count
      metrics.payloadsStored.inc(count)
      metrics.objectsStored.inc()
      for (let i = 0; i < acceptances.length; i += 2) {
        metrics.observeDelivery((now - acceptances[i]!) / 1000, acceptances[i + 1]!)
      }
      recordStoredRate(count, now)
      settle(count)
    })

  const release = (hold: WorkerHold) => {
    if (hold.encoded !== undefined) bodies.release(hold.encoded)
    hold.jobs = []
    hold.lines = 0
    hold.bytes = 0
    hold.full = false
    hold.key = undefined
    hold.encoded = undefined
  }

  /** Uploads the worker's batch; never fails: what is not stored is dead-lettered and counted. */
  const deliver = (hold: WorkerHold, key: string) =>
    Effect.suspend(() => {
      const count = hold.lines
      const body = bodies.encode(hold.jobs)
      slabs.release(hold.jobs)
      // Requests acknowledged in the same millisecond are delivered with the same delay: one
      // entry, and one histogram update, for all of them.
      const acceptances: Array<number> = []
      for (const job of hold.jobs) {
        const last = acceptances.length - 2
        if (last >= 0 && acceptances[last] === job.acceptedAt) acceptances[last + 1] = acceptances[last + 1]! + job.count
        else acceptances.push(job.acceptedAt, job.count)
      }
      // From here the batch is its encoded body: the slab space its lines took is free again.
      hold.jobs = []
      hold.encoded = body
      // The outcome is booked and the hold emptied in one uninterruptible step, so that the
      // shutdown never finds a booked batch still held and books it a second time.
      const book = (outcome: Effect.Effect<void>) =>
        Effect.uninterruptible(Effect.zipRight(outcome, Effect.sync(() => release(hold))))
      return uploader.upload(key, body).pipe(
        Effect.matchCauseEffect({
          onSuccess: () => book(markStored(count, acceptances)),
          onFailure: (cause) => {
            const error = cause._tag === "Fail" ? cause.error : undefined
            const why = error !== undefined ? storeErrorFields(error) : { reason: "upload defect" }
            return book(
              (error === undefined ? Effect.logError("upload defect", cause) : Effect.void).pipe(
                Effect.zipRight(deadLetterBatch(key, count, body, why))
              )
            )
          }
        })
      )
    })

  // One worker at a time collects a batch; the others upload theirs meanwhile. Were all idle
  // workers waiting on the queue, each line of a burst would go to a different worker and
  // light load would write one object per payload.
  //
  // The turn is a token in a one-place queue, which hands it to the longest-waiting worker alone.
  // Effect's semaphore resumes every waiting fiber when its permit is released, and all but one
  // then wait again: with 16 workers that was about 20 wake-ups per batch.
  const collectorTurn = yield* Queue.bounded<void>(1)
  yield* Queue.offer(collectorTurn, undefined)
  const asCollector = <A, E>(self: Effect.Effect<A, E>) =>
    Effect.acquireUseRelease(Queue.take(collectorTurn), () => self, () => Queue.offer(collectorTurn, undefined))

  const collect = (hold: WorkerHold) =>
    Effect.gen(function*() {
      if (overflow.length === 0) take(hold, [yield* Queue.take(queue)])
      const openedAt = yield* Clock.currentTimeMillis
      yield* fill(hold, openedAt)
      hold.key = objectKey(config.s3Prefix, openedAt, instance, ++sequence)
      return hold.key
    })

  const worker = (hold: WorkerHold) =>
    Effect.gen(function*() {
      const key = yield* asCollector(collect(hold))
      yield* deliver(hold, key)
    }).pipe(Effect.forever)

  /**
   * Opens `arrivals` when the waiting collector's batch is due. One long-lived fiber instead of a
   * timeout around each wait: `Effect.timeoutOption` forks two fibers and joins one per batch,
   * which cost more than the rest of the collector's turn. A batch opens after the one before it,
   * so a due time is never earlier than one the fiber is already sleeping towards; waking for a
   * batch that has since closed costs one check.
   */
  const closeDueBatches = Effect.gen(function*() {
    while (true) {
      yield* waiting.await
      const now = yield* Clock.currentTimeMillis
      if (now >= dueAt) {
        waiting.unsafeClose()
        arrivals.unsafeOpen()
      } else {
        yield* Effect.sleep(Duration.millis(dueAt - now))
      }
    }
  })

  const fibers: Array<Fiber.RuntimeFiber<never>> = []
  yield* Effect.forkScoped(Effect.interruptible(closeDueBatches))
  for (let i = 0; i < config.maxWorkers; i++) {
    const hold: WorkerHold = { jobs: [], lines: 0, bytes: 0, key: undefined, full: false, encoded: undefined }
    holds.push(hold)
    // Layers are built uninterruptibly and a fork inherits that: without `interruptible` the
    // shutdown could never interrupt a worker stuck in an upload.
    fibers.push(
      yield* Effect.forkScoped(Effect.interruptible(worker(hold)).pipe(Effect.annotateLogs({ worker: i + 1 })))
    )
  }

  /** Waits until nothing is queued or in flight, or until the epoch millis `until`. True when drained. */
  const awaitIdle = (until: number) =>
    Effect.gen(function*() {
      arrivals.unsafeOpen() // let batches that wait for more lines go now
      const now = yield* Clock.currentTimeMillis
      // Callers run this in finalizers, which are uninterruptible: the wait must be made
      // interruptible or the timeout could not cut it short.
      const drained = yield* Effect.timeoutOption(
        Effect.interruptible(idle.await),
        Duration.millis(Math.max(0, until - now))
      )
      return Option.isSome(drained)
    })

  const stats = (): QueueStats => ({
    accepted,
    stored,
    deadLettered,
    lost,
    queued: queuedPayloads(),
    queuedBytes,
    inFlight
  })

  /** Everything not stored after the workers stopped: in-flight batches keep their key. */
  const deadLetterLeftovers = Effect.gen(function*() {
    for (const hold of holds) {
      if (hold.lines > 0) {
        const key = hold.key ?? objectKey(config.s3Prefix, yield* Clock.currentTimeMillis, instance, ++sequence)
        yield* deadLetterBatch(key, hold.lines, hold.encoded ?? encodeLeftover(hold.jobs), { reason: "shutdown before upload" })
        release(hold)
      }
    }
    const leftovers = [...overflow.splice(0), ...Chunk.toReadonlyArray(yield* Queue.takeAll(queue))]
    for (const job of leftovers) {
      queued -= job.count
      queuedJobs--
      queuedBytes -= job.bytes
      inFlight += job.count
    }
    yield* leftoverBatches(leftovers)
  })

  const leftoverBatches = (jobs: ReadonlyArray<Job>) =>
    Effect.gen(function*() {
      for (const batch of batchesOf(jobs, config.batchMaxItems, config.batchMaxBytes)) {
        const key = objectKey(config.s3Prefix, yield* Clock.currentTimeMillis, instance, ++sequence)
        yield* deadLetterBatch(key, payloadCount(batch), encodeLeftover(batch), { reason: "shutdown before upload" })
      }
    })

  const encodeLeftover = (jobs: ReadonlyArray<Job>) => {
    const body = encodeBatch(jobs)
    slabs.release(jobs)
    return body
  }

  // Added after the workers were forked, so it runs before the scope interrupts them.
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      lifecycle.intakeOpen = false
      const deadline = beginShutdown(lifecycle, yield* Clock.currentTimeMillis, config.shutdownTimeoutMs)
      const reserve = Math.min(SHUTDOWN_RESERVE_MILLIS, config.shutdownTimeoutMs / 2)
      yield* awaitIdle(deadline - reserve)
      yield* Fiber.interruptAll(fibers)
      yield* deadLetterLeftovers
      lifecycle.exitCode = lost > 0 ? 2 : deadLettered > 0 ? 1 : 0
      yield* Effect.logInfo("shutdown").pipe(Effect.annotateLogs({ accepted, stored, deadLettered, lost }))
    })
  )

  return {
    offer,
    /** The store breaker is open or probing. */
    storeDown: uploader.storeDown,
    breakerStatus: uploader.breakerStatus,
    awaitIdle,
    stats,
    /** Seconds a refused client should wait: queue depth over the measured drain rate, 1–60. */
    retryAfterSeconds: (): number => {
      const depth = queuedPayloads() + inFlight
      // The measured rate is stale while the breaker holds every batch.
      if (uploader.storeDown()) return 30
      if (storedPerSecond <= 0) return depth === 0 ? 1 : 5
      return Math.min(60, Math.max(1, Math.ceil(depth / storedPerSecond)))
    }
  } as const
})

export class JobQueue extends Effect.Service<JobQueue>()("s3-ingest/JobQueue", { scoped: make }) {}
