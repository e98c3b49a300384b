/**
 * Jobs and batches. A job is one entry of the queue: the NDJSON lines, each ending in "\n", of a
 * request's payloads (or of consecutive requests accepted in the same millisecond), one after
 * another in a slab of queue memory (domain/Slabs). A batch is the unit of upload: the jobs (or
 * parts of jobs) one worker took, encoded as one object.
 *
 * At most one job per request rather than one per payload: admission offers one queue entry, a
 * worker takes one, and no per-payload object is allocated between the request and the batch.
 */

import type { Codec } from "./Codec.js"
import type { Span } from "./journal/Records.js"
import type { Receipt } from "./Receipt.js"

/** Memory queued lines are written to. Its books are kept by `domain/Slabs`. */
export interface Slab {
  readonly memory: Buffer
  /** Bytes written from the start of `memory`. */
  used: number
  /** Bytes of lines written and not yet released. */
  pending: number
}

export interface Job {
  /** Holds the job's lines at [start, start + bytes). */
  readonly slab: Slab
  readonly start: number
  /** What the job adds to an object and to the queue's byte bound: its lines and a "\n" each. */
  readonly bytes: number
  readonly count: number
  /** When the request was acknowledged. */
  readonly acceptedAt: number
  /** The journal's lines record holding these lines (0 when not journaled), and the first line's index in it. */
  readonly record: number
  readonly line: number
  /** The request waiting for these lines to be stored, if it asked (`?ack=stored`). */
  readonly receipt: Receipt | undefined
}

const LF = 0x0a

/**
 * Where the first `count` lines of `job` end. A line holds no raw line break (domain/Slabs blanks
 * them), so its "\n" is the first one after its start.
 */
const linesEnd = (job: Job, count: number): number => {
  const memory = job.slab.memory
  let at = job.start
  for (let k = 0; k < count; k++) at = memory.indexOf(LF, at) + 1
  return at
}

const cut = (job: Job, count: number, headBytes: number): readonly [Job, Job] => [
  { ...job, count, bytes: headBytes },
  { ...job, start: job.start + headBytes, count: job.count - count, bytes: job.bytes - headBytes, line: job.line + count }
]

/** The first `count` lines of `job` and the rest; `0 < count < job.count`. */
export const splitJob = (job: Job, count: number): readonly [Job, Job] =>
  cut(job, count, linesEnd(job, count) - job.start)

/** A batch being filled. */
export interface OpenBatch {
  jobs: Array<Job>
  lines: number
  bytes: number
}

export const emptyBatch = (): OpenBatch => ({ jobs: [], lines: 0, bytes: 0 })

/**
 * A batch of one partition: open to more lines until a worker takes it (or it fills up), then
 * keyed, encoded and delivered. Its window starts at `openedAt`.
 */
export interface Batch extends OpenBatch {
  /** The partition path its key carries (KEY_PARTITIONS filled in). */
  readonly partition: string
  /** The `{version}` value it counts against MAX_PARTITIONS ("" when batches are not split by version). */
  readonly version: string
  readonly openedAt: number
  /** Handed to the workers: due, or full. */
  offered: boolean
  /** Taken by a worker: its lines are in flight and no more join. */
  taken: boolean
  /** Its lines encoded, in a reused buffer, until compressed. */
  raw: Buffer | undefined
  /** The object's bytes. */
  body: Buffer | undefined
  /** Its batch record in the journal (0 when not journaled), and the journaled lines it holds. */
  journalId: number
  spans: ReadonlyArray<Span>
  /** A batch recovered from the journal comes keyed, with the codec it was first written with. */
  key: string | undefined
  codec: Codec | undefined
  /** Receipts waiting for this batch, with how many of their payloads it holds. */
  receipts: Array<readonly [Receipt, number]> | undefined
}

export const newBatch = (partition: string, version: string, openedAt: number): Batch => ({
  jobs: [],
  lines: 0,
  bytes: 0,
  partition,
  version,
  openedAt,
  offered: false,
  taken: false,
  raw: undefined,
  body: undefined,
  journalId: 0,
  spans: [],
  key: undefined,
  codec: undefined,
  receipts: undefined
})

/** The receipts waiting for lines of `jobs`, with how many each; undefined when none is. */
export const receiptsOf = (jobs: ReadonlyArray<Job>): Array<readonly [Receipt, number]> | undefined => {
  let receipts: Array<readonly [Receipt, number]> | undefined
  for (const job of jobs) if (job.receipt !== undefined) (receipts ??= []).push([job.receipt, job.count])
  return receipts
}

/** The journaled lines `jobs` hold, adjacent lines of one record as one span. */
export const spansOf = (jobs: ReadonlyArray<Job>): Array<Span> => {
  const spans: Array<Span> = []
  let last: Span | undefined
  for (const job of jobs) {
    if (last !== undefined && last.record === job.record && last.line + last.count === job.line) {
      last = { record: last.record, line: last.line, count: last.count + job.count }
      spans[spans.length - 1] = last
    } else {
      last = { record: job.record, line: job.line, count: job.count }
      spans.push(last)
    }
  }
  return spans
}

/**
 * Adds to `batch` as many of the job's lines as fit in `maxLines` lines and `maxBytes` bytes (an
 * empty batch takes at least one line, however large), and returns the rest of the job, if any.
 */
export const addToBatch = (batch: OpenBatch, job: Job, maxLines: number, maxBytes: number): Job | undefined => {
  const roomLines = maxLines - batch.lines
  const roomBytes = maxBytes - batch.bytes
  if (job.count <= roomLines && job.bytes <= roomBytes) {
    take(batch, job)
    return undefined
  }
  const memory = job.slab.memory
  const limit = Math.min(job.count, roomLines)
  let fit = 0
  let end = job.start
  while (fit < limit) {
    const next = memory.indexOf(LF, end) + 1
    if (next - job.start > roomBytes) break
    end = next
    fit++
  }
  if (fit === 0 && batch.lines === 0) {
    fit = 1
    end = memory.indexOf(LF, job.start) + 1
  }
  if (fit === 0) return job
  if (fit === job.count) {
    take(batch, job)
    return undefined
  }
  const [head, rest] = cut(job, fit, end - job.start)
  take(batch, head)
  return rest
}

const take = (batch: OpenBatch, job: Job) => {
  batch.jobs.push(job)
  batch.lines += job.count
  batch.bytes += job.bytes
}

/** Payloads in `jobs`. */
export const payloadCount = (jobs: ReadonlyArray<Job>): number => {
  let count = 0
  for (let i = 0; i < jobs.length; i++) count += jobs[i]!.count
  return count
}

/** Bytes of the object body of `jobs`. */
const bodyBytes = (jobs: ReadonlyArray<Job>): number => {
  let total = 0
  for (let i = 0; i < jobs.length; i++) total += jobs[i]!.bytes
  return total
}

/** The object body: one payload per line, each line ending in "\n". */
export const encodeBatch = (jobs: ReadonlyArray<Job>): Buffer => {
  const out = Buffer.allocUnsafe(bodyBytes(jobs))
  encodeInto(out, jobs)
  return out
}

/** Object bodies encoded into buffers that are used again once their batch is settled. */
export interface BodyBuffers {
  /** The body of `jobs`: in a reused buffer when it fits one, else in memory of its own. */
  readonly encode: (jobs: ReadonlyArray<Job>) => Buffer
  /** Takes back a body `encode` returned. Nothing may read it afterwards. */
  readonly release: (body: Buffer) => void
  /** Buffers waiting to be used again. */
  readonly idle: () => number
}

/**
 * Why reuse: V8 counts the external memory allocated since its last mark-compact against the old
 * generation's limit, until a scavenge frees it. A fresh 1 MB body per batch was enough to start a
 * mark-compact every few hundred milliseconds under load (30–34 in 8 s against 13 with reuse, on one
 * core). Buffers are `size` bytes; a larger body gets its own. At most `keep` are kept.
 */
export const makeBodyBuffers = (size: number, keep: number): BodyBuffers => {
  const free: Array<ArrayBuffer> = []
  const ours = new WeakSet<ArrayBuffer>()
  return {
    encode: (jobs) => {
      const total = bodyBytes(jobs)
      if (total > size) return encodeBatch(jobs)
      let memory = free.pop()
      if (memory === undefined) {
        memory = Buffer.allocUnsafeSlow(size).buffer as ArrayBuffer
        ours.add(memory)
      }
      const body = Buffer.from(memory, 0, total)
      encodeInto(body, jobs)
      return body
    },
    release: (body) => {
      const memory = body.buffer as ArrayBuffer
      if (ours.has(memory) && free.length < keep && !free.includes(memory)) free.push(memory)
    },
    idle: () => free.length
  }
}

/** Writes the jobs' lines at the start of `out`. */
const encodeInto = (out: Buffer, jobs: ReadonlyArray<Job>): void => {
  let offset = 0
  let i = 0
  while (i < jobs.length) {
    const { slab, start } = jobs[i]!
    let end = start + jobs[i]!.bytes
    // Jobs written one after another to the same slab are copied as one run: a one-payload
    // flood makes a batch of a thousand jobs and a handful of copies.
    for (i++; i < jobs.length && jobs[i]!.slab === slab && jobs[i]!.start === end; i++) end += jobs[i]!.bytes
    offset += slab.memory.copy(out, offset, start, end)
  }
}

/**
 * Cuts `jobs` into batches of at most `maxLines` lines and `maxBytes` bytes (a single line larger
 * than `maxBytes` makes a batch of its own), splitting jobs where a bound falls inside one.
 */
export const batchesOf = (jobs: ReadonlyArray<Job>, maxLines: number, maxBytes: number): Array<Array<Job>> => {
  const batches: Array<Array<Job>> = []
  let batch = emptyBatch()
  for (const job of jobs) {
    let rest = addToBatch(batch, job, maxLines, maxBytes)
    while (rest !== undefined) {
      batches.push(batch.jobs)
      batch = emptyBatch()
      rest = addToBatch(batch, rest, maxLines, maxBytes)
    }
  }
  if (batch.jobs.length > 0) batches.push(batch.jobs)
  return batches
}
