/**
 * The admission buffer: the queue's memory and its books. It is plain synchronous code, the one
 * owner of the bounds, the slabs and the ledger, because admission must be all-or-nothing in one
 * JavaScript turn (no fiber may interleave between the check of the bounds and the copy of the
 * lines) and it runs once per request, where an Effect would cost more than the request.
 *
 * A collection goes through three steps: `reserve` holds its lines against the bounds (copied into
 * a slab, not yet takeable), `commit` makes them takeable and counts them accepted, `release`
 * drops a reservation as if it had never been made. `admit` does the first two in one turn. Only
 * committed lines can be taken, by `fill`, into a batch: from then on they are in flight until
 * `settle` says what became of them. At every moment
 *
 *   accepted = stored + deadLettered + lost + queued + inFlight
 *
 * and lines reserved but not committed are in none of these (`checkLedger`).
 */
import { addToBatch, type Job, type OpenBatch } from "../../domain/Batch.js"
import { type Arrival, makeSlabs, type Slabs } from "../../domain/Slabs.js"
import { RingBuffer } from "./RingBuffer.js"

export interface Ledger {
  readonly accepted: number
  readonly stored: number
  readonly deadLettered: number
  readonly lost: number
  /** Committed lines waiting for a batch. */
  readonly queued: number
  readonly queuedBytes: number
  /** Lines taken into a batch, not yet settled. */
  readonly inFlight: number
}

/** Why a collection is refused: it can never fit, the buffer is full, or the store is down. */
export type Refusal = "too_large" | "full" | "shedding"

export type Settlement = "stored" | "deadLettered" | "lost"

export interface BufferBounds {
  readonly maxQueue: number
  readonly maxQueueBytes: number
  /** Fill above which intake sheds while the store is down, in (0, 1]. */
  readonly shedHighWater: number
}

/**
 * Size of the slabs queued lines are copied into, and how many empty ones are kept: under a steady
 * flood a few cycle; a buffer filled to its bound holds `MAX_QUEUE_BYTES` of them while it lasts.
 */
const SLAB_BYTES = 1024 * 1024
const IDLE_SLABS = 4

export interface AdmissionBuffer {
  /** Holds the arrival's lines against the bounds, or refuses them all. `storeDown`: keep head-room. */
  readonly reserve: (arrival: Arrival, storeDown: boolean) => Job | Refusal
  /** The reserved lines become takeable and count as accepted. */
  readonly commit: (job: Job) => void
  /** The reserved lines are dropped: never taken, never counted. */
  readonly release: (job: Job) => void
  /**
   * `reserve` and `commit` in one turn. Collections admitted in the same millisecond, one after
   * another, share one job: their lines follow each other in the slab and are delivered with the
   * same delay, which under a flood of one-payload requests spares most of them a job.
   */
  readonly admit: (arrival: Arrival, storeDown: boolean) => "admitted" | Refusal
  /**
   * Moves committed lines, oldest first, into `batch` until it is full; they are in flight from now
   * on. True when the batch can take no more: it is full, or the next line does not fit.
   */
  readonly fill: (batch: OpenBatch, maxLines: number, maxBytes: number) => boolean
  /** Takes every committed line left, in order, as jobs (for shutdown); they are in flight from now on. */
  readonly takeAll: () => ReadonlyArray<Job>
  /** `count` in-flight lines are settled. */
  readonly settle: (count: number, outcome: Settlement) => void
  /** The jobs' lines are encoded (or dropped): their slab space may be used again. */
  readonly releaseLines: (jobs: ReadonlyArray<Job>) => void
  /**
   * Calls `signal` once, as soon as at least `lines` lines or `bytes` bytes are committed and
   * waiting (at once if they already are). A later call replaces an earlier one.
   */
  readonly wakeAt: (lines: number, bytes: number, signal: () => void) => void
  readonly ledger: () => Ledger
  /** Nothing queued or in flight. */
  readonly idle: () => boolean
  /** Calls `signal` once, as soon as nothing is queued or in flight (at once if so already). */
  readonly whenIdle: (signal: () => void) => void
}

/** Where `ledger` breaks its invariant, or undefined. */
export const checkLedger = (l: Ledger): string | undefined => {
  const settledOrHeld = l.stored + l.deadLettered + l.lost + l.queued + l.inFlight
  if (l.accepted !== settledOrHeld) return `accepted ${l.accepted} ≠ ${settledOrHeld} settled, queued or in flight`
  if (Object.values(l).some((n) => n < 0)) return `a negative count: ${JSON.stringify(l)}`
  return undefined
}

export const makeAdmissionBuffer = (bounds: BufferBounds): AdmissionBuffer => {
  // A job holds at least one line, so `maxQueue` slots are never all taken: the bounds are
  // checked before a job is pushed.
  const jobs = new RingBuffer<Job>(bounds.maxQueue)
  const slabs: Slabs = makeSlabs(Math.min(bounds.maxQueueBytes, SLAB_BYTES), IDLE_SLABS)
  const shedLines = bounds.maxQueue * bounds.shedHighWater
  const shedBytes = bounds.maxQueueBytes * bounds.shedHighWater

  let accepted = 0
  let stored = 0
  let deadLettered = 0
  let lost = 0
  let queued = 0
  let queuedBytes = 0
  let inFlight = 0
  let reserved = 0
  let reservedBytes = 0
  let wakeLines = Number.POSITIVE_INFINITY
  let wakeBytes = Number.POSITIVE_INFINITY
  let wake: (() => void) | undefined
  let onIdle: (() => void) | undefined

  const refusal = (arrival: Arrival, storeDown: boolean): Refusal | undefined => {
    const { bytes, count } = arrival
    if (count > bounds.maxQueue || bytes > bounds.maxQueueBytes) return "too_large"
    const lines = queued + reserved + count
    const held = queuedBytes + reservedBytes + bytes
    if (lines > bounds.maxQueue || held > bounds.maxQueueBytes) return "full"
    // While the store is down, keep the head-room above the high-water mark for when it returns.
    if (storeDown && (lines > shedLines || held > shedBytes)) return "shedding"
    return undefined
  }

  const committed = (count: number, bytes: number) => {
    queued += count
    queuedBytes += bytes
    accepted += count
    if (wake !== undefined && (queued >= wakeLines || queuedBytes >= wakeBytes)) {
      const signal = wake
      wake = undefined
      signal()
    }
  }

  const commit = (job: Job) => {
    reserved -= job.count
    reservedBytes -= job.bytes
    jobs.push(job)
    committed(job.count, job.bytes)
  }

  return {
    reserve: (arrival, storeDown) => {
      const refused = refusal(arrival, storeDown)
      if (refused !== undefined) return refused
      reserved += arrival.count
      reservedBytes += arrival.bytes
      return slabs.write(arrival)
    },
    commit,
    release: (job) => {
      reserved -= job.count
      reservedBytes -= job.bytes
      slabs.release([job])
    },
    admit: (arrival, storeDown) => {
      const refused = refusal(arrival, storeDown)
      if (refused !== undefined) return refused
      const tail = jobs.last()
      const extended = tail === undefined ? undefined : slabs.append(tail, arrival)
      if (extended !== undefined) jobs.replaceLast(extended)
      else jobs.push(slabs.write(arrival))
      committed(arrival.count, arrival.bytes)
      return "admitted"
    },
    fill: (batch, maxLines, maxBytes) => {
      const lines = batch.lines
      const bytes = batch.bytes
      while (jobs.length > 0 && batch.lines < maxLines && batch.bytes < maxBytes) {
        const rest = addToBatch(batch, jobs.first()!, maxLines, maxBytes)
        if (rest === undefined) {
          jobs.shift()
        } else {
          // The batch is full: the rest of the job stays first in line, so a collection split
          // across batches keeps its order.
          jobs.replaceFirst(rest)
          break
        }
      }
      queued -= batch.lines - lines
      queuedBytes -= batch.bytes - bytes
      inFlight += batch.lines - lines
      return jobs.length > 0 || batch.lines >= maxLines || batch.bytes >= maxBytes
    },
    takeAll: () => {
      const all: Array<Job> = []
      for (let job = jobs.shift(); job !== undefined; job = jobs.shift()) all.push(job)
      inFlight += queued
      queued = 0
      queuedBytes = 0
      return all
    },
    settle: (count, outcome) => {
      inFlight -= count
      if (outcome === "stored") stored += count
      else if (outcome === "deadLettered") deadLettered += count
      else lost += count
      if (onIdle !== undefined && queued === 0 && inFlight === 0) {
        const signal = onIdle
        onIdle = undefined
        signal()
      }
    },
    releaseLines: slabs.release,
    wakeAt: (lines, bytes, signal) => {
      if (queued >= lines || queuedBytes >= bytes) {
        wake = undefined
        return signal()
      }
      wakeLines = lines
      wakeBytes = bytes
      wake = signal
    },
    ledger: () => ({ accepted, stored, deadLettered, lost, queued, queuedBytes, inFlight }),
    idle: () => queued === 0 && inFlight === 0,
    whenIdle: (signal) => {
      if (queued === 0 && inFlight === 0) return signal()
      onIdle = signal
    }
  }
}
