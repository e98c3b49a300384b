/**
 * Parses a text as the edge does (as its UTF-8 bytes) and reads back the NDJSON lines of the job
 * made from it: what a batch would hold.
 */
import { type Collection, type CollectionError, type JsonProfile, parseCollection } from "../../src/domain/Collection.js"
import { makeArrival, makeSlabs } from "../../src/domain/Slabs.js"

export type ParsedText =
  | { readonly _tag: "Collection"; readonly collection: Collection; readonly lines: ReadonlyArray<string> }
  | { readonly _tag: "Invalid"; readonly error: CollectionError }

/**
 * The plain `json` profile unless told otherwise: most tests are about the grammar and the lines;
 * the I-JSON rules have tests of their own.
 */
export const parseText = (text: string, maxDepth: number, profile: JsonProfile = "json"): ParsedText =>
  parseBody(bodyOf(text), maxDepth, profile)

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

/** As `parseText`, on bytes. */
export const parseBody = (body: Buffer, maxDepth: number, profile: JsonProfile = "json"): ParsedText => {
  const parsed = parseCollection(body, maxDepth, profile)
  if (parsed._tag === "Invalid") return parsed
  const arrival = makeArrival(body, parsed.collection, 0)
  const job = makeSlabs(arrival.bytes, 1).write(arrival, 0)
  const lines = job.slab.memory.toString("utf8", job.start, job.start + job.bytes).split("\n").slice(0, -1)
  return { _tag: "Collection", collection: parsed.collection, lines }
}
