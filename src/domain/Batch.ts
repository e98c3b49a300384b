/**
 * A batch is the unit of upload: the payload lines one worker took, under one key.
 */

/**
 * A queued payload: its NDJSON line as UTF-8 bytes (no trailing "\n"), and when it was
 * acknowledged. Bytes, not strings: queued payloads then live outside the JavaScript heap, so a
 * full queue does not make every garbage collection walk it, and batches are assembled by copying.
 */
export interface Job {
  readonly line: Uint8Array
  readonly acceptedAt: number
}

/** What a job adds to an object and to the queue's byte bound: its line and "\n". */
export const jobBytes = (job: Job): number => job.line.length + 1

/** The object body: one payload per line, each line ending in "\n". */
export const encodeBatch = (jobs: ReadonlyArray<Job>): Uint8Array => {
  let total = 0
  for (let i = 0; i < jobs.length; i++) total += jobs[i]!.line.length + 1
  const body = Buffer.allocUnsafe(total)
  let offset = 0
  for (let i = 0; i < jobs.length; i++) {
    const line = jobs[i]!.line
    body.set(line, offset)
    offset += line.length
    body[offset++] = 0x0a
  }
  return body
}

/**
 * The UTF-8 bytes of each line. Where the body is ASCII (as many bytes as characters) and a line
 * is the body's own slice, its bytes are a view of the body: no copy, no encoding.
 */
export const lineBytesOf = (
  body: Uint8Array,
  text: string,
  lines: ReadonlyArray<string>,
  spans: ReadonlyArray<number>
): Array<Uint8Array> => {
  const ascii = body.length === text.length
  const out = new Array<Uint8Array>(lines.length)
  for (let k = 0; k < lines.length; k++) {
    const start = spans[2 * k]!
    out[k] = ascii && start >= 0 ? body.subarray(start, spans[2 * k + 1]!) : Buffer.from(lines[k]!, "utf8")
  }
  return out
}
