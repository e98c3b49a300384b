/**
 * The request body as the edge hands it to admission: one buffer, inflated if it came gzipped.
 */
import { gunzipSync } from "node:zlib"

/** The body as one buffer; the queue copies the lines it keeps, so a lone chunk is used as it is. */
export const wholeBody = (chunks: ReadonlyArray<Buffer>, size: number): Buffer =>
  chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)

/** A gzipped body inflated to at most `maxBytes`, or why not. */
export const inflate = (body: Buffer, maxBytes: number): Buffer | "too_large" | "malformed" => {
  try {
    return gunzipSync(body, { maxOutputLength: maxBytes })
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE" ? "too_large" : "malformed"
  }
}
