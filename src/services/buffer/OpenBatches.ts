/**
 * The open batches of the admission buffer: at most one per partition, taking lines until it is
 * full or a worker takes it. A batch is offered to the workers once it is full, or once its
 * window (`BATCH_MAX_WAIT_MS` after its first line) has passed; an offered batch that waits for a
 * free worker keeps taking its partition's lines, so a busy store gets full objects. Every window
 * is as long as the others, so batches fall due in the order they opened: one queue of openings
 * is the timer's whole schedule.
 */
import { addToBatch, type Batch, type Job, newBatch } from "../../domain/Batch.js"
import { partitionPath } from "../../domain/Partitions.js"
import type { Arrival, Slabs } from "../../domain/Slabs.js"
import type { BufferSettings } from "./AdmissionBuffer.js"

const HOUR = 3_600_000

export interface OpenBatches {
  /** Puts a job's lines in their partition's open batch, opening (and filling) as many as needed. */
  readonly add: (job: Job, version: string, now: number) => void
  /**
   * `add` for an arrival not yet in a slab: collections admitted in the same millisecond, one after
   * another, share one job when they fit, which under a flood of one-payload requests spares most
   * of them a job of their own.
   */
  readonly admit: (arrival: Arrival, version: string, now: number, slabs: Slabs) => void
  readonly offerDue: (now: number) => number | undefined
  /** Offers every open batch now, whatever its window. */
  readonly offerAll: () => void
  /** Open batches not offered yet: waiting for their window. */
  readonly waiting: () => number
  /** No more lines join `batch`. */
  readonly take: (batch: Batch) => void
}

export const makeOpenBatches = (settings: BufferSettings, offer: (batch: Batch) => void, due: () => void): OpenBatches => {
  const { batchMaxBytes, batchMaxItems, batchMaxWaitMs, partitions } = settings
  const open = new Map<string, Batch>()
  // Batches in the order they opened, from `first` on: the order they fall due.
  let openings: Array<Batch | undefined> = []
  let first = 0
  let waiting = 0
  // The partition path of each version this hour: paths change at most once an hour. Versions come
  // from clients and cycle through the MAX_PARTITIONS slots, so the cache starts over beyond them.
  const paths = new Map<string, string>()
  const pathsKept = settings.maxPartitions + 2
  let pathsHour = -1

  const pathOf = (version: string, now: number): string => {
    const hour = Math.floor(now / HOUR)
    if (hour !== pathsHour || paths.size > pathsKept) {
      paths.clear()
      pathsHour = hour
    }
    let path = paths.get(version)
    if (path === undefined) {
      path = partitionPath(partitions, now, version)
      paths.set(version, path)
    }
    return path
  }

  const offerOnce = (batch: Batch) => {
    if (batch.offered) return
    batch.offered = true
    waiting--
    offer(batch)
  }

  const isFull = (batch: Batch) => batch.lines >= batchMaxItems || batch.bytes >= batchMaxBytes

  /** A full batch takes no more lines: the next line of its partition opens another. */
  const close = (batch: Batch) => {
    if (open.get(batch.partition) === batch) open.delete(batch.partition)
    offerOnce(batch)
  }

  const openBatch = (partition: string, version: string, now: number): Batch => {
    const batch = newBatch(partition, version, now)
    open.set(partition, batch)
    waiting++
    if (batchMaxWaitMs > 0) {
      openings.push(batch)
      if (openings.length - first === 1) due()
    }
    return batch
  }

  const add = (job: Job, version: string, now: number) => {
    const partition = pathOf(version, now)
    let batch = open.get(partition) ?? openBatch(partition, version, now)
    let rest = addToBatch(batch, job, batchMaxItems, batchMaxBytes)
    while (rest !== undefined) {
      close(batch)
      batch = openBatch(partition, version, now)
      rest = addToBatch(batch, rest, batchMaxItems, batchMaxBytes)
    }
    if (isFull(batch)) close(batch)
    else if (batchMaxWaitMs === 0) offerOnce(batch)
  }

  return {
    add,
    admit: (arrival, version, now, slabs) => {
      const batch = open.get(pathOf(version, now))
      const tail = batch?.jobs[batch.jobs.length - 1]
      if (
        batch !== undefined && tail !== undefined && batch.lines + arrival.count <= batchMaxItems &&
        batch.bytes + arrival.bytes <= batchMaxBytes
      ) {
        const extended = slabs.append(tail, arrival)
        if (extended !== undefined) {
          batch.jobs[batch.jobs.length - 1] = extended
          batch.lines += arrival.count
          batch.bytes += arrival.bytes
          if (isFull(batch)) close(batch)
          return
        }
      }
      add(slabs.write(arrival, 0), version, now)
    },
    offerDue: (now) => {
      while (first < openings.length) {
        const batch = openings[first]!
        if (batch.openedAt + batchMaxWaitMs > now) {
          // Under a steady load the queue never empties: drop what has been passed now and then.
          if (first > 1024 && first * 2 > openings.length) {
            openings = openings.slice(first)
            first = 0
          }
          return batch.openedAt + batchMaxWaitMs
        }
        openings[first++] = undefined
        if (!batch.taken) offerOnce(batch)
      }
      openings = []
      first = 0
      return undefined
    },
    offerAll: () => {
      for (const batch of open.values()) offerOnce(batch)
    },
    waiting: () => waiting,
    take: (batch) => {
      batch.taken = true
      if (open.get(batch.partition) === batch) open.delete(batch.partition)
    }
  }
}
