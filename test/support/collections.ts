/**
 * Parses a text as the edge does (as its UTF-8 bytes) and reads back the NDJSON lines of the job
 * made from it: what a batch would hold.
 */
import { makeJob } from "../../src/domain/Batch.js"
import { type Collection, type CollectionError, parseCollection } from "../../src/domain/Collection.js"

export type ParsedText =
  | { readonly _tag: "Collection"; readonly collection: Collection; readonly lines: ReadonlyArray<string> }
  | { readonly _tag: "Invalid"; readonly error: CollectionError }

export const parseText = (text: string, maxDepth: number): ParsedText => parseBody(bodyOf(text), maxDepth)

/**
 * The UTF-8 bytes of `text` in memory of their own, as Node's HTTP parser hands a body over
 * (`Buffer.from` would place a small one in a shared pool).
 */
export const bodyOf = (text: string): Buffer => {
  const bytes = Buffer.from(text, "utf8")
  const body = Buffer.allocUnsafeSlow(bytes.length)
  bytes.copy(body)
  return body
}

/** As `parseText`, on bytes; `body` may be changed (see `makeJob`). */
export const parseBody = (body: Buffer, maxDepth: number): ParsedText => {
  const parsed = parseCollection(body, maxDepth)
  if (parsed._tag === "Invalid") return parsed
  const job = makeJob(body, parsed.collection, 0)
  const lines = Array.from(
    { length: job.count },
    (_, k) => job.body.toString("utf8", job.spans[2 * k]!, job.spans[2 * k + 1]!)
  )
  return { _tag: "Collection", collection: parsed.collection, lines }
}
