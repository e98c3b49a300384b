/**
 * The queue's memory. At admission a collection's lines are copied, as NDJSON, into large buffers
 * ("slabs"), which are used again once the lines in them have been encoded into object bodies.
 *
 * Why copy: a job that kept its request body kept four heap objects and a block of memory outside
 * the heap alive per request until its batch filled, about 100 ms under a flood of one-payload
 * requests. That is long enough for V8 to promote them to the old generation (3.3–3.5 MB/s), where
 * only a mark-compact frees them, and the bodies' outside memory then drove more mark-compacts. A
 * copied body dies young; a queued job is one small object, and its lines cost no allocation.
 *
 * Slabs also bring the memory the queue holds close to what its byte bound counts: a slab holds
 * lines and nothing else, whatever else the request body carried.
 */
import type { Job, Slab } from "./Batch.js"
import type { Collection } from "./Collection.js"
import type { Receipt } from "./Receipt.js"

const LF = 0x0a
const CR = 0x0d
const SPACE = 0x20

/** A validated collection at the queue's door: its payloads still as ranges of the request body. */
export interface Arrival {
  readonly body: Buffer
  readonly collection: Collection
  readonly count: number
  /** The payloads' lines and a "\n" each: what the job will hold. */
  readonly bytes: number
  /** When the request was acknowledged. */
  readonly acceptedAt: number
  /** The request waits for its payloads to be stored (`?ack=stored`). */
  readonly receipt: Receipt | undefined
}

export const makeArrival = (
  body: Buffer,
  collection: Collection,
  acceptedAt: number,
  receipt?: Receipt
): Arrival => {
  const payloads = collection.payloads
  const count = payloads.count
  let bytes = 0
  for (let k = 0; k < count; k++) bytes += payloads.end(k) - payloads.start(k) + 1
  return { body, collection, count, bytes, acceptedAt, receipt }
}

export interface Slabs {
  /** Copies the arrival's lines into a slab: the job the queue holds; `record`: its journal record, or 0. */
  readonly write: (arrival: Arrival, record: number) => Job
  /**
   * `tail` with the arrival's lines appended, when `tail` is the last job written to the current
   * slab, the lines fit after it, and both were accepted in the same millisecond; else undefined.
   * Only for lines not journaled and not waited for: a journaled job's lines are one record's, a
   * receipt's job is its request's.
   */
  readonly append: (tail: Job, arrival: Arrival) => Job | undefined
  /** The jobs' lines are encoded (or dropped): the space they took may be used again. */
  readonly release: (jobs: ReadonlyArray<Job>) => void
  /** Slabs waiting to be used again. */
  readonly idle: () => number
  /** Memory of the slabs this holds: in use, current, or kept for reuse. */
  readonly liveBytes: () => number
}

/**
 * Slabs of `size` bytes, of which at most `keep` empty ones are kept. Lines go to the current
 * slab while they fit, else to a fresh one; lines larger than a slab get memory of their own.
 * When nothing in the current slab is pending it is written from its start again, so a queue
 * that keeps up cycles through one slab.
 */
export const makeSlabs = (size: number, keep: number): Slabs => {
  const free: Array<Slab> = []
  let current: Slab | undefined
  let live = 0

  const allocate = (bytes: number): Slab => {
    live += bytes
    return { memory: Buffer.allocUnsafeSlow(bytes), used: 0, pending: 0 }
  }

  const slabFor = (bytes: number): Slab => {
    if (bytes > size) return allocate(bytes)
    if (current === undefined || current.used + bytes > size) current = free.pop() ?? allocate(size)
    return current
  }

  return {
    write: (arrival, record) => {
      const slab = slabFor(arrival.bytes)
      const start = slab.used
      copyLines(slab.memory, start, arrival)
      slab.used += arrival.bytes
      slab.pending += arrival.bytes
      const { acceptedAt, bytes, count, receipt } = arrival
      return { slab, start, bytes, count, acceptedAt, record, line: 0, receipt }
    },
    append: (tail, arrival) => {
      const slab = tail.slab
      if (
        slab !== current || tail.start + tail.bytes !== slab.used || tail.acceptedAt !== arrival.acceptedAt ||
        slab.used + arrival.bytes > size || tail.record !== 0 || tail.receipt !== undefined ||
        arrival.receipt !== undefined
      ) return undefined
      copyLines(slab.memory, slab.used, arrival)
      slab.used += arrival.bytes
      slab.pending += arrival.bytes
      const { acceptedAt, bytes, count, start } = tail
      return {
        slab,
        start,
        bytes: bytes + arrival.bytes,
        count: count + arrival.count,
        acceptedAt,
        record: 0,
        line: 0,
        receipt: undefined
      }
    },
    release: (jobs) => {
      for (let i = 0; i < jobs.length; i++) {
        const { bytes, slab } = jobs[i]!
        slab.pending -= bytes
        if (slab.pending > 0) continue
        slab.used = 0
        if (slab === current) continue
        // A slab is emptied once per filling: after this it is written again only as `current`.
        if (slab.memory.length === size && free.length < keep) free.push(slab)
        else live -= slab.memory.length
      }
    },
    idle: () => free.length,
    liveBytes: () => live
  }
}

/**
 * Writes the arrival's lines, each ending in "\n", at `at` of `out`. Lines one byte apart in the
 * body (compact JSON's commas) are copied as one run and their separators overwritten: one copy
 * per request rather than one per payload. An element written over several lines has its raw
 * line breaks blanked: outside strings, where alone they can be, they are whitespace.
 */
const copyLines = (out: Buffer, at: number, arrival: Arrival): void => {
  const { body, collection: { multiline, payloads } } = arrival
  const lines = payloads.count
  let offset = at
  let k = 0
  while (k < lines) {
    let last = k
    while (last + 1 < lines && payloads.start(last + 1) === payloads.end(last) + 1) last++
    const start = payloads.start(k)
    const stop = payloads.end(last)
    body.copy(out, offset, start, stop)
    if (multiline) {
      for (let j = offset; j < offset + stop - start; j++) if (out[j] === LF || out[j] === CR) out[j] = SPACE
    }
    for (let m = k; m < last; m++) out[offset + payloads.end(m) - start] = LF
    offset += stop - start
    out[offset++] = LF
    k = last + 1
  }
}
