/**
 * What `replay` accepts as a dead-letter file: the bytes of one object, as the service would
 * have stored them — NDJSON, gzipped when its name ends in `.gz`. Anything else found in the
 * directory (an empty file, an editor's backup, a file truncated by hand) is left alone rather
 * than uploaded as an object that readers would choke on.
 */
import { gunzipSync } from "node:zlib"

const NEWLINE = 0x0a

/** Why `bytes` is not one batch of NDJSON payloads, or undefined when it is. */
export const ndjsonProblem = (bytes: Uint8Array): string | undefined => {
  if (bytes.length === 0) return "empty file"
  if (bytes[bytes.length - 1] !== NEWLINE) return "does not end with a newline"
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8")
  let line = 0
  let start = 0
  while (start < text.length) {
    line++
    const end = text.indexOf("\n", start)
    let value: unknown
    try {
      value = JSON.parse(text.slice(start, end))
    } catch {
      return `line ${line} is not JSON`
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) return `line ${line} is not a JSON object`
    start = end + 1
  }
  return undefined
}

/** The payloads in valid NDJSON: one per line. */
const payloadLines = (bytes: Uint8Array): number => {
  let n = 0
  for (let i = 0; i < bytes.length; i++) if (bytes[i] === NEWLINE) n++
  return n
}

/** The file at `path` holds `payloads` payloads, or it is not an object's bytes and why. */
export const inspectDeadLetter = (
  path: string,
  bytes: Uint8Array
): { readonly payloads: number } | { readonly problem: string } => {
  let ndjson = bytes
  if (path.endsWith(".gz")) {
    try {
      ndjson = gunzipSync(bytes)
    } catch {
      return { problem: "not gzip" }
    }
  }
  const problem = ndjsonProblem(ndjson)
  return problem === undefined ? { payloads: payloadLines(ndjson) } : { problem }
}
