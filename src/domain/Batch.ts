/**
 * Jobs and batches. A job is what one request added to the queue: its payloads' NDJSON lines,
 * held as byte ranges of the request body. A batch is the unit of upload: the jobs (or parts of
 * jobs) one worker took, encoded as one object.
 *
 * One job per request rather than one per payload: admission offers one queue entry, a worker
 * takes one, and no per-payload object is allocated between the request and the batch's copy.
 */
import type { Collection } from "./Collection.js"

export interface Job {
  /** The request body; the job owns it. */
  readonly body: Buffer
  /** [start, end) of every line of the collection in `body`, two numbers per line. */
  readonly spans: ReadonlyArray<number>
  /** The job's lines are `first` … `first + count - 1`: a split job shares its body and spans. */
  readonly first: number
  readonly count: number
  /** What the job adds to an object and to the queue's byte bound: its lines and a "\n" each. */
  readonly bytes: number
  /** When the request was acknowledged. */
  readonly acceptedAt: number
}

const LF = 0x0a
const CR = 0x0d
const SPACE = 0x20

const lineBytes = (spans: ReadonlyArray<number>, line: number): number => spans[2 * line + 1]! - spans[2 * line]! + 1

const rangeBytes = (spans: ReadonlyArray<number>, first: number, count: number): number => {
  let bytes = 0
  for (let k = first; k < first + count; k++) bytes += lineBytes(spans, k)
  return bytes
}

/**
 * Memory a job may hold beyond twice its lines' bytes before they are copied out of its body: a
 * collection's envelope (`version`, `token`, brackets) fits in it.
 */
const SLACK_BYTES = 256

/**
 * The job of a validated collection. Takes ownership of `body`: the raw line breaks of elements
 * written over several lines are blanked in place (outside strings, where alone they can be, they
 * are whitespace), so every line is the element's own bytes and one NDJSON line.
 *
 * The queue bounds the bytes of the lines, so a job whose body holds much more than its lines
 * (other top-level fields, padding, a buffer shared with other data) has them copied out into a
 * buffer of their own: what the queue holds stays within about twice what it counts.
 */
export const makeJob = (body: Buffer, collection: Collection, acceptedAt: number): Job => {
  const spans = collection.spans
  const count = spans.length / 2
  if (collection.multiline) {
    for (let k = 0; k < count; k++) {
      for (let at = spans[2 * k]!; at < spans[2 * k + 1]!; at++) {
        if (body[at] === LF || body[at] === CR) body[at] = SPACE
      }
    }
  }
  // An exact-size copy of the spans: the validator's array grew by `push`, so V8 gave it room for
  // half as many numbers again plus 16, which a queued job would keep (and V8 promote) as it waits.
  const job: Job = { body, spans: spans.slice(), first: 0, count, bytes: rangeBytes(spans, 0, count), acceptedAt }
  return body.buffer.byteLength > 2 * job.bytes + SLACK_BYTES ? compacted(job) : job
}

/** The job with its lines copied, newline-separated, into a buffer of exactly their size. */
const compacted = (job: Job): Job => {
  const body = Buffer.allocUnsafeSlow(job.bytes)
  encodeInto(body, [job])
  const spans = new Array<number>(2 * job.count)
  let at = 0
  for (let k = 0; k < job.count; k++) {
    const length = lineBytes(job.spans, job.first + k) - 1
    spans[2 * k] = at
    spans[2 * k + 1] = at + length
    at += length + 1
  }
  return { ...job, body, spans, first: 0 }
}

/** The first `count` lines of `job` and the rest; `0 < count < job.count`. */
export const splitJob = (job: Job, count: number): readonly [Job, Job] => {
  const headBytes = rangeBytes(job.spans, job.first, count)
  return [
    { ...job, count, bytes: headBytes },
    { ...job, first: job.first + count, count: job.count - count, bytes: job.bytes - headBytes }
  ]
}

/** A batch being filled. */
export interface OpenBatch {
  jobs: Array<Job>
  lines: number
  bytes: number
}

export const emptyBatch = (): OpenBatch => ({ jobs: [], lines: 0, bytes: 0 })

/**
 * Adds to `batch` as many of the job's lines as fit in `maxLines` lines and `maxBytes` bytes (an
 * empty batch takes at least one line, however large), and returns the rest of the job, if any.
 */
export const addToBatch = (batch: OpenBatch, job: Job, maxLines: number, maxBytes: number): Job | undefined => {
  const roomLines = maxLines - batch.lines
  const roomBytes = maxBytes - batch.bytes
  let fit = job.count
  if (job.count > roomLines || job.bytes > roomBytes) {
    const limit = Math.min(job.count, roomLines)
    let bytes = 0
    fit = 0
    while (fit < limit) {
      bytes += lineBytes(job.spans, job.first + fit)
      if (bytes > roomBytes) break
      fit++
    }
    if (batch.lines === 0) fit = Math.max(1, fit)
  }
  if (fit === 0) return job
  if (fit === job.count) {
    take(batch, job)
    return undefined
  }
  const [head, rest] = splitJob(job, fit)
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

/** Writes the jobs' lines, each ending in "\n", at the start of `out`. */
const encodeInto = (out: Buffer, jobs: ReadonlyArray<Job>): void => {
  let offset = 0
  for (let i = 0; i < jobs.length; i++) {
    const { body, count, first, spans } = jobs[i]!
    const end = first + count
    let k = first
    while (k < end) {
      // Lines one byte apart (compact JSON's commas) are copied as one run, their separators
      // then overwritten with line ends: one copy per request instead of one per payload.
      let last = k
      while (last + 1 < end && spans[2 * last + 2] === spans[2 * last + 1]! + 1) last++
      const start = spans[2 * k]!
      const stop = spans[2 * last + 1]!
      body.copy(out, offset, start, stop)
      for (let m = k; m < last; m++) out[offset + spans[2 * m + 1]! - start] = LF
      offset += stop - start
      out[offset++] = LF
      k = last + 1
    }
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
