/**
 * The admission buffer: the queue's memory and its books. It is plain synchronous code, the one
 * owner of the bounds, the slabs, the open batches and the ledger, because admission must be
 * all-or-nothing in one JavaScript turn (no fiber may interleave between the check of the bounds
 * and the copy of the lines) and it runs once per request, where an Effect would cost more than
 * the request.
 *
 * A collection goes through three steps: `reserve` holds its lines against the bounds (copied into
 * a slab, not yet in a batch), `commit` puts them in the open batch of their partition and counts
 * them accepted, `release` drops a reservation as if it had never been made; `admit` does the
 * first two in one turn. Each partition has at most one open batch, which takes lines until it is
 * full or a worker takes it; once its window has passed (`offerDue`), or it is full, it is offered
 * to the workers (OpenBatches). Lines in open batches count against the bounds, so partitions
 * cannot hold memory beyond them. At every moment
 *
 *   accepted + recovered = stored + deadLettered + lost + queued + inFlight
 *
 * where `queued` is the lines in batches no worker has taken, and lines reserved but not committed
 * are in none of these (`checkLedger`).
 */
import { type Batch, type Job } from "../../domain/Batch.js"
import { INVALID, OVERFLOW, type PartitionTemplate, versionValue } from "../../domain/Partitions.js"
import { type Arrival, makeSlabs, type Slabs } from "../../domain/Slabs.js"
import { makeOpenBatches } from "./OpenBatches.js"

export interface Ledger {
  readonly accepted: number
  /** Lines found unsettled in the journal at start. */
  readonly recovered: number
  readonly stored: number
  readonly deadLettered: number
  readonly lost: number
  /** Committed lines in batches no worker has taken. */
  readonly queued: number
  readonly queuedBytes: number
  /** Lines in batches taken by workers, not yet settled. */
  readonly inFlight: number
}

/** Why a collection is refused: it can never fit, the buffer is full, or the store is down. */
export type Refusal = "too_large" | "full" | "shedding"

export type Settlement = "stored" | "deadLettered" | "lost"

export interface BufferSettings {
  readonly maxQueue: number
  readonly maxQueueBytes: number
  /** Fill above which intake sheds while the store is down, in (0, 1]. */
  readonly shedHighWater: number
  readonly batchMaxItems: number
  readonly batchMaxBytes: number
  readonly batchMaxWaitMs: number
  /** Most `{version}` values batching at once. */
  readonly maxPartitions: number
  readonly partitions: PartitionTemplate
}

/**
 * Size of the slabs queued lines are copied into, and how many empty ones are kept: under a steady
 * flood a few cycle; a buffer filled to its bound holds `MAX_QUEUE_BYTES` of them while it lasts.
 */
const SLAB_BYTES = 1024 * 1024
const IDLE_SLABS = 4

/** A collection's lines held against the bounds, not yet in a batch. */
export interface Reservation {
  readonly job: Job
  readonly version: string
}

export interface AdmissionBuffer {
  /**
   * Holds the arrival's lines against the bounds, or refuses them all. `storeDown`: keep head-room;
   * `record`: the journal record that will hold them.
   */
  readonly reserve: (arrival: Arrival, storeDown: boolean, record: number) => Reservation | Refusal
  /** The reserved lines join their partition's open batch at `now` and count as accepted. */
  readonly commit: (reservation: Reservation, now: number) => void
  /** The reserved lines are dropped: never taken, never counted. */
  readonly release: (reservation: Reservation) => void
  /** `reserve` and `commit` in one turn. */
  readonly admit: (arrival: Arrival, storeDown: boolean, now: number) => "admitted" | Refusal
  /** A keyed batch recovered from the journal joins the queue, beyond the bounds if need be. */
  readonly recover: (batch: Batch) => void
  /** Offers the batches whose window has passed by `now`; when the next one's does, if any. */
  readonly offerDue: (now: number) => number | undefined
  /** Offers every open batch now (intake has closed). */
  readonly offerAll: () => void
  /** A worker takes an offered batch: no more lines join it, and its lines are in flight. */
  readonly take: (batch: Batch) => void
  /** `count` in-flight lines are settled. */
  readonly settle: (count: number, outcome: Settlement) => void
  /** The jobs' lines are encoded (or dropped): their slab space may be used again. */
  readonly releaseLines: (jobs: ReadonlyArray<Job>) => void
  readonly ledger: () => Ledger
  /** Calls `signal` once, as soon as nothing is queued or in flight (at once if so already). */
  readonly whenIdle: (signal: () => void) => void
}

/** Where `ledger` breaks its invariant, or undefined. */
export const checkLedger = (l: Ledger): string | undefined => {
  const settledOrHeld = l.stored + l.deadLettered + l.lost + l.queued + l.inFlight
  if (l.accepted + l.recovered !== settledOrHeld) {
    return `accepted ${l.accepted} + recovered ${l.recovered} ≠ ${settledOrHeld} settled, queued or in flight`
  }
  if (Object.values(l).some((n) => n < 0)) return `a negative count: ${JSON.stringify(l)}`
  return undefined
}

/**
 * `offer` hands a batch to the workers; `due` is told the first time an open batch waits for its
 * window, so a timer can call `offerDue`.
 */
export const makeAdmissionBuffer = (
  settings: BufferSettings,
  offer: (batch: Batch) => void,
  due: () => void
): AdmissionBuffer => {
  const slabs: Slabs = makeSlabs(Math.min(settings.maxQueueBytes, SLAB_BYTES), IDLE_SLABS)
  const batches = makeOpenBatches(settings, offer, due)
  const shedLines = settings.maxQueue * settings.shedHighWater
  const shedBytes = settings.maxQueueBytes * settings.shedHighWater

  let accepted = 0
  let recovered = 0
  let stored = 0
  let deadLettered = 0
  let lost = 0
  let queued = 0
  let queuedBytes = 0
  let inFlight = 0
  let reserved = 0
  let reservedBytes = 0
  let onIdle: (() => void) | undefined
  // Lines held per `{version}` value: the values batching now, which MAX_PARTITIONS bounds.
  const versions = new Map<string, number>()
  let distinctVersions = 0

  const refusal = (arrival: Arrival, storeDown: boolean): Refusal | undefined => {
    const { bytes, count } = arrival
    if (count > settings.maxQueue || bytes > settings.maxQueueBytes) return "too_large"
    const lines = queued + reserved + count
    const held = queuedBytes + reservedBytes + bytes
    if (lines > settings.maxQueue || held > settings.maxQueueBytes) return "full"
    // While the store is down, keep the head-room above the high-water mark for when it returns.
    if (storeDown && (lines > shedLines || held > shedBytes)) return "shedding"
    return undefined
  }

  /** The `{version}` value the arrival's lines batch under. */
  const versionOf = (arrival: Arrival): string => {
    if (!settings.partitions.byVersion) return ""
    const value = versionValue(arrival.collection.version)
    if (value === INVALID || versions.has(value)) return value
    return distinctVersions >= settings.maxPartitions ? OVERFLOW : value
  }

  /** Lines held (reserved, queued or in an open batch) per version, which MAX_PARTITIONS counts. */
  const countVersion = (version: string, lines: number) => {
    if (!settings.partitions.byVersion) return
    const before = versions.get(version) ?? 0
    const after = before + lines
    const counted = version !== INVALID && version !== OVERFLOW
    if (after === 0) {
      versions.delete(version)
      if (counted) distinctVersions--
    } else {
      if (before === 0 && counted) distinctVersions++
      versions.set(version, after)
    }
  }

  const committed = (count: number, bytes: number) => {
    queued += count
    queuedBytes += bytes
    accepted += count
  }

  /**
   * Open batches wait for their window only while the queue has room: past half of either bound,
   * or once the slabs hold more memory than the byte bound (one line of a quiet partition keeps a
   * whole slab), every open batch is offered, so workers take them and the memory comes back.
   */
  const relieve = () => {
    if (
      batches.waiting() > 0 &&
      (queued * 2 > settings.maxQueue || queuedBytes * 2 > settings.maxQueueBytes ||
        slabs.liveBytes() > settings.maxQueueBytes)
    ) batches.offerAll()
  }

  const settle = (count: number, outcome: Settlement) => {
    inFlight -= count
    if (outcome === "stored") stored += count
    else if (outcome === "deadLettered") deadLettered += count
    else lost += count
    if (onIdle !== undefined && queued === 0 && inFlight === 0) {
      const signal = onIdle
      onIdle = undefined
      signal()
    }
  }

  return {
    reserve: (arrival, storeDown, record) => {
      const refused = refusal(arrival, storeDown)
      if (refused !== undefined) return refused
      reserved += arrival.count
      reservedBytes += arrival.bytes
      const version = versionOf(arrival)
      countVersion(version, arrival.count)
      return { job: slabs.write(arrival, record), version }
    },
    commit: ({ job, version }, now) => {
      reserved -= job.count
      reservedBytes -= job.bytes
      committed(job.count, job.bytes)
      batches.add(job, version, now)
      relieve()
    },
    release: ({ job, version }) => {
      reserved -= job.count
      reservedBytes -= job.bytes
      countVersion(version, -job.count)
      slabs.release([job])
    },
    admit: (arrival, storeDown, now) => {
      const refused = refusal(arrival, storeDown)
      if (refused !== undefined) return refused
      const version = versionOf(arrival)
      countVersion(version, arrival.count)
      committed(arrival.count, arrival.bytes)
      batches.admit(arrival, version, now, slabs)
      relieve()
      return "admitted"
    },
    recover: (batch) => {
      recovered += batch.lines
      queued += batch.lines
      queuedBytes += batch.bytes
    },
    offerDue: batches.offerDue,
    offerAll: batches.offerAll,
    take: (batch) => {
      batches.take(batch)
      queued -= batch.lines
      queuedBytes -= batch.bytes
      inFlight += batch.lines
      // A recovered batch never counted against MAX_PARTITIONS.
      if (batch.key === undefined) countVersion(batch.version, -batch.lines)
    },
    settle,
    releaseLines: slabs.release,
    ledger: () => ({ accepted, recovered, stored, deadLettered, lost, queued, queuedBytes, inFlight }),
    whenIdle: (signal) => {
      if (queued === 0 && inFlight === 0) return signal()
      onIdle = signal
    }
  }
}
