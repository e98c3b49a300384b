/**
 * What happens to a batch once a worker has taken and keyed it: it is encoded into a reused body
 * buffer, compressed with its codec (gzip runs on libuv's thread pool, off the event loop), uploaded
 * through the Uploader, and settled in the buffer's ledger as stored, dead-lettered (under its own
 * key, the object's exact bytes), or lost when even the dead-letter write fails. A delivery never
 * fails: whatever is not stored is dead-lettered and counted.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { gzip } from "node:zlib"
import { type Batch, type BodyBuffers, makeBodyBuffers } from "../../domain/Batch.js"
import type { Codec } from "../../domain/Codec.js"
import { answerReceipt, receiptStored } from "../../domain/Receipt.js"
import type { DrainRate } from "../../domain/DrainRate.js"
import type { AdmissionBuffer } from "../buffer/AdmissionBuffer.js"
import type { JournalShape } from "../journal/Journal.js"
import type { Metrics } from "../Metrics.js"
import { type DeadLetterShape, type StoreError, storeErrorFields } from "../ObjectStore.js"
import type { Uploader } from "./Uploader.js"

/** `raw` gzipped on libuv's thread pool. `raw` must stay as it is until this ends. */
const gzipped = (raw: Buffer, level: number): Effect.Effect<Buffer> =>
  Effect.async<Buffer>((resume) =>
    gzip(raw, { level }, (error, out) => resume(error === null ? Effect.succeed(out) : Effect.die(error)))
  )

/**
 * Size of the reused object-body buffers: a batch of 1,000 payloads of 1–2 KB fits. Memory is
 * resident only as far as bodies have filled it.
 */
const BODY_BUFFER_BYTES = 2 * 1024 * 1024

export interface Delivery {
  /** Uploads a taken batch under `key` and settles it. */
  readonly deliver: (batch: Batch, key: string) => Effect.Effect<void>
  /** Dead-letters a taken batch that was not stored (shutdown) under `key`, and settles it. */
  readonly deadLetter: (batch: Batch, key: string) => Effect.Effect<void>
}

export interface DeliveryParts {
  readonly buffer: AdmissionBuffer
  readonly uploader: Uploader
  readonly deadLetter: DeadLetterShape
  readonly metrics: Metrics
  readonly drainRate: DrainRate
  readonly workers: number
  readonly batchMaxBytes: number
  readonly codec: Codec
  readonly journal: JournalShape
  /** Batches taken and not yet settled, with their keys: a batch leaves it when it is settled. */
  readonly unsettled: Map<Batch, string>
}

export const makeDelivery = (parts: DeliveryParts): Delivery => {
  const { buffer, deadLetter, drainRate, journal, metrics, unsettled, uploader } = parts
  // One buffer per worker at most: a batch's body is in one until the batch is settled.
  const bodies: BodyBuffers = makeBodyBuffers(Math.min(parts.batchMaxBytes, BODY_BUFFER_BYTES), parts.workers)

  /**
   * `why`: the fields of the log line that say why the batch was not stored. A write that fails,
   * or dies, loses the batch, unless the journal holds it: then it stays there, in flight, for the
   * next start to upload.
   */
  const deadLetterBatch = (batch: Batch, key: string, body: Uint8Array, why: Record<string, unknown>) => {
    const count = batch.lines
    return deadLetter.write(key, body).pipe(
      Effect.matchCauseEffect({
        onSuccess: () =>
          Effect.sync(() => {
            buffer.settle(count, "deadLettered")
            metrics.payloadsDeadLettered.inc(count)
            if (batch.journalId > 0) journal.settle(batch.journalId, batch.spans, "deadLettered")
            giveUpReceipts(batch)
          }).pipe(
            Effect.zipRight(
              Effect.logWarning("batch dead-lettered").pipe(Effect.annotateLogs({ key, payloads: count, ...why }))
            )
          ),
        onFailure: (cause: Cause.Cause<StoreError>) =>
          Effect.sync(() => {
            giveUpReceipts(batch)
            if (batch.journalId > 0) return
            buffer.settle(count, "lost")
            metrics.payloadsLost.inc(count)
          }).pipe(
            Effect.zipRight(
              Effect.logError(
                batch.journalId > 0 ? "dead-letter write failed: payloads stay in the journal" : "dead-letter write failed: payloads lost"
              ).pipe(
                Effect.annotateLogs({
                  key,
                  payloads: count,
                  ...Option.match(Cause.failureOption(cause), {
                    onNone: () => ({ reason: Cause.pretty(cause) }),
                    onSome: storeErrorFields
                  })
                })
              )
            )
          )
      })
    )
  }

  /** Requests waiting for a receipt of a batch that was not stored are answered 202 now. */
  const giveUpReceipts = (batch: Batch) => {
    if (batch.receipts !== undefined) for (const [receipt] of batch.receipts) answerReceipt(receipt, false)
  }

  /** `acceptances`: when each request of the batch was acknowledged, and its payload count. */
  const markStored = (batch: Batch, key: string, count: number, acceptances: ReadonlyArray<number>, raw: number, stored: number) =>
    Effect.map(Clock.currentTimeMillis, (now) => {
      buffer.settle(count, "stored")
      if (batch.journalId > 0) journal.settle(batch.journalId, batch.spans, "stored")
      if (batch.receipts !== undefined) for (const [receipt, lines] of batch.receipts) receiptStored(receipt, lines, key)
      metrics.payloadsStored.inc(count)
      metrics.objectsStored.inc()
      metrics.objectBytes(raw, stored)
      for (let i = 0; i < acceptances.length; i += 2) {
        metrics.observeDelivery((now - acceptances[i]!) / 1000, acceptances[i + 1]!)
      }
      drainRate.record(count, now)
    })

  /** The batch is settled: its buffers go back, and shutdown will not find it. */
  const done = (batch: Batch) => {
    if (batch.raw !== undefined) bodies.release(batch.raw)
    if (batch.body !== undefined) bodies.release(batch.body)
    batch.raw = undefined
    batch.body = undefined
    unsettled.delete(batch)
  }

  /**
   * The object's bytes: the held lines encoded into a reused buffer (from here their slab space is
   * free again), then compressed; the reused buffer goes back once the compressed copy exists.
   */
  const objectBody = (batch: Batch): Effect.Effect<Buffer> =>
    Effect.suspend(() => {
      if (batch.body !== undefined) return Effect.succeed(batch.body)
      if (batch.raw === undefined) {
        batch.raw = bodies.encode(batch.jobs)
        buffer.releaseLines(batch.jobs)
        batch.jobs = []
      }
      const raw = batch.raw
      const codec = batch.codec ?? parts.codec
      if (codec.compression === "none") {
        batch.body = raw
        batch.raw = undefined
        return Effect.succeed(raw)
      }
      return Effect.map(gzipped(raw, codec.level), (body) => {
        batch.body = body
        if (batch.raw === raw) {
          bodies.release(raw)
          batch.raw = undefined
        }
        return body
      })
    })

  const deliver = (batch: Batch, key: string) =>
    Effect.suspend(() => {
      const count = batch.lines
      // Requests acknowledged in the same millisecond are delivered with the same delay: one
      // entry, and one histogram update, for all of them.
      const acceptances: Array<number> = []
      for (const job of batch.jobs) {
        const last = acceptances.length - 2
        if (last >= 0 && acceptances[last] === job.acceptedAt) acceptances[last + 1] = acceptances[last + 1]! + job.count
        else acceptances.push(job.acceptedAt, job.count)
      }
      const raw = batch.bytes
      // The outcome is booked and the batch let go in one uninterruptible step, so that the
      // shutdown never finds a booked batch unsettled and books it a second time.
      const book = (outcome: Effect.Effect<void>) =>
        Effect.uninterruptible(Effect.zipRight(outcome, Effect.sync(() => done(batch))))
      // The batch record is durable before any of its bytes leave the process.
      const recorded = journal.admits && batch.key === undefined
        ? Effect.map(journal.recordBatch(key, parts.codec, batch.spans), (id) => {
          batch.journalId = id
        })
        : Effect.void
      return Effect.zipRight(recorded, objectBody(batch)).pipe(Effect.flatMap((body) =>
        uploader.upload(key, body).pipe(
          Effect.matchCauseEffect({
            onSuccess: () => book(markStored(batch, key, count, acceptances, raw, body.length)),
            onFailure: (cause) =>
              book(Option.match(Cause.failureOption(cause), {
                onNone: () =>
                  Effect.logError("upload defect", cause).pipe(
                    Effect.zipRight(deadLetterBatch(batch, key, body, { reason: "upload defect" }))
                  ),
                onSome: (error) => deadLetterBatch(batch, key, body, storeErrorFields(error))
              }))
          })
        )))
    })

  return {
    deliver,
    deadLetter: (batch, key) =>
      objectBody(batch).pipe(
        Effect.flatMap((body) => deadLetterBatch(batch, key, body, { reason: "shutdown before upload" })),
        // Only a failure of zlib itself leaves no bytes to write: the batch is lost, and says so.
        Effect.catchAllDefect((defect) =>
          Effect.sync(() => {
            buffer.settle(batch.lines, "lost")
            metrics.payloadsLost.inc(batch.lines)
          }).pipe(Effect.zipRight(
            Effect.logError("object body failed: payloads lost", Cause.die(defect)).pipe(
              Effect.annotateLogs({ key, payloads: batch.lines })
            )
          ))
        ),
        Effect.zipRight(Effect.sync(() => done(batch)))
      )
  }
}
