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

/** The object body: one payload per line, each line ending in "\n". */
export const encodeBatch = (jobs: ReadonlyArray<Job>): Uint8Array => {
  const lines = new Array<string>(jobs.length)
  for (let i = 0; i < jobs.length; i++) lines[i] = jobs[i]!.line
  return Buffer.from(lines.join("\n") + "\n", "utf8")
}

export const lineBytes = (line: string): number => Buffer.byteLength(line, "utf8") + 1
