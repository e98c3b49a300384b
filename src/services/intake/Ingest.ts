/**
 * Admission of one collection: parse and validate, check the token, then offer its payloads to
 * the queue as one job, all of them or none, synchronously. The answer is a value the edge turns
 * into a response, or, with the journal, a pending one it answers when the fsync covering it
 * completes. No fiber waits for it.
 */
import { createHash, timingSafeEqual } from "node:crypto"
import * as Effect from "effect/Effect"
import { parseCollection } from "../../domain/Collection.js"
import { type Pending, pending, settlePending } from "../../domain/Pending.js"
import { makeReceipt, type Receipt, type ReceiptAnswer } from "../../domain/Receipt.js"
import type { Rejection } from "../../domain/Rejection.js"
import { makeArrival } from "../../domain/Slabs.js"
import { AppConfig } from "../AppConfig.js"
import { type Admission, JobQueue } from "../JobQueue.js"

export type AdmitResult =
  | { readonly _tag: "Accepted"; readonly count: number; readonly receipt: Receipt | undefined }
  | { readonly _tag: "Rejected"; readonly rejection: Rejection; readonly retryAfter?: number }

const rejected = (rejection: Rejection, retryAfter?: number): AdmitResult =>
  retryAfter === undefined ? { _tag: "Rejected", rejection } : { _tag: "Rejected", rejection, retryAfter }

/** The journal probes itself about once a second. */
const JOURNAL_RETRY_AFTER = 1

const digest = (token: string): Buffer => createHash("sha256").update(token, "utf8").digest()

/**
 * Constant-time membership: every allowed token is compared, each through a fixed-length
 * digest, so neither the position of a match nor a common prefix shows in the timing.
 */
export const makeTokenCheck = (allowed: ReadonlyArray<string> | undefined): (token: string) => boolean => {
  if (allowed === undefined) return () => true
  const digests = allowed.map(digest)
  return (token) => {
    const candidate = digest(token)
    let match = false
    for (const d of digests) match = timingSafeEqual(d, candidate) || match
    return match
  }
}

const make = Effect.gen(function*() {
  const config = yield* AppConfig
  const queue = yield* JobQueue
  const tokenAllowed = makeTokenCheck(config.ingestTokens)

  const outcome = (admission: Admission, count: number, receipt: Receipt | undefined): AdmitResult => {
    switch (admission) {
      case "admitted":
        return { _tag: "Accepted", count, receipt }
      case "too_large":
        return rejected({ reason: "too_many_payloads", message: "collection larger than the queue" })
      case "closed":
        return rejected({ reason: "draining", message: "shutting down" }, queue.retryAfterSeconds())
      case "shedding":
        return rejected({ reason: "shedding", message: "store unavailable, retry later" }, queue.retryAfterSeconds())
      case "full":
        return rejected({ reason: "queue_full", message: "queue full, retry later" }, queue.retryAfterSeconds())
      case "journal_unavailable":
        return rejected({ reason: "journal_unavailable", message: "journal unavailable, retry later" }, JOURNAL_RETRY_AFTER)
    }
  }

  /**
   * Admits the collection in `body`: the answer now, or, with the journal, a pending one given once
   * its record is durable. The queue copies what it keeps, so the body is not held. With
   * `onReceipt` (`?ack=stored`), an accepted collection carries a receipt that is answered through
   * it once its payloads are stored, or not within ACK_TIMEOUT_MS.
   */
  const admit = (body: Buffer, now: number, onReceipt?: ReceiptAnswer): AdmitResult | Pending<AdmitResult> => {
    const parsed = parseCollection(body, config.maxJsonDepth, config.jsonProfile)
    if (parsed._tag === "Invalid") return rejected(parsed.error)
    const collection = parsed.collection
    if (!tokenAllowed(collection.token)) return rejected({ reason: "unauthorized", message: "token not allowed" })
    const count = collection.payloads.count
    if (count > config.maxPayloadsPerRequest) {
      return rejected({ reason: "too_many_payloads", message: `more than ${config.maxPayloadsPerRequest} payloads` })
    }
    const receipt = onReceipt === undefined ? undefined : makeReceipt(count, onReceipt)
    const admission = queue.offer(makeArrival(body, collection, now, receipt))
    if (typeof admission === "string") return outcome(admission, count, receipt)
    const result = pending<AdmitResult>()
    admission.onAnswer = (answer) => settlePending(result, outcome(answer, count, receipt))
    return result
  }

  return {
    admit,
    /** `Authorization: Bearer <t>` check, before the body is read. */
    tokenAllowed,
    authRequired: config.ingestTokens !== undefined
  } as const
})

export class Ingest extends Effect.Service<Ingest>()("s3-ingest/Ingest", { effect: make }) {}
