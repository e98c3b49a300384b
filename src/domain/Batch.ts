/**
 * A batch is the unit of upload: the payload lines one worker took, under one key.
 */

/** A queued payload: its NDJSON line (no trailing "\n") and when it was acknowledged. */
export interface Job {
  readonly line: string
  /** UTF-8 bytes of the line plus its "\n": what it adds to an object and to the queue bound. */
  readonly bytes: number
  readonly acceptedAt: number
}

export interface Batch {
  readonly key: string
  readonly jobs: ReadonlyArray<Job>
  readonly bytes: number
}

/** The object body: one payload per line, each line ending in "\n", encoded in one copy. */
export const encodeBatch = (jobs: ReadonlyArray<Job>): Uint8Array => {
  let total = 0
  for (let i = 0; i < jobs.length; i++) total += jobs[i]!.bytes
  const body = Buffer.allocUnsafe(total)
  let offset = 0
  for (let i = 0; i < jobs.length; i++) {
    offset += body.write(jobs[i]!.line, offset, "utf8")
    body[offset++] = 0x0a
  }
  return body
}

export const lineBytes = (line: string): number => Buffer.byteLength(line, "utf8") + 1
