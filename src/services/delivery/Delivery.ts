/**
 * What happens to a batch once it is collected and keyed: it is encoded into a reused body
 * buffer, uploaded through the Uploader, and settled in the buffer's ledger as stored,
 * dead-lettered (under its own key), or lost when even the dead-letter write fails. A delivery
 * never fails: whatever is not stored is dead-lettered and counted.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { type BodyBuffers, type Job, makeBodyBuffers, type OpenBatch } from "../../domain/Batch.js"
import type { DrainRate } from "../../domain/DrainRate.js"
import type { AdmissionBuffer } from "../buffer/AdmissionBuffer.js"
import type { Metrics } from "../Metrics.js"
import { type DeadLetterShape, type StoreError, storeErrorFields } from "../ObjectStore.js"
import type { Uploader } from "./Uploader.js"

/** What one worker holds: the batch it is filling, or uploading (then as its encoded body). */
export interface Hold extends OpenBatch {
  key: string | undefined
  body: Buffer | undefined
}

export const emptyHold = (): Hold => ({ jobs: [], lines: 0, bytes: 0, key: undefined, body: undefined })

/**
 * Size of the reused object-body buffers: a batch of 1,000 payloads of 1–2 KB fits. Memory is
 * resident only as far as bodies have filled it.
 */
const BODY_BUFFER_BYTES = 2 * 1024 * 1024

export interface Delivery {
  /** Uploads the held batch under `key` and settles it; the hold is empty afterwards. */
  readonly deliver: (hold: Hold, key: string) => Effect.Effect<void>
  /**
   * Dead-letters what a hold still has (shutdown): its batch under its own key when it has one,
   * else under `newKey()`; the hold is empty afterwards.
   */
  readonly deadLetterHold: (hold: Hold, newKey: () => Effect.Effect<string>) => Effect.Effect<void>
  /** Dead-letters lines no batch took (shutdown), as one object under `key`. */
  readonly deadLetterJobs: (jobs: ReadonlyArray<Job>, key: string) => Effect.Effect<void>
}

export interface DeliveryParts {
  readonly buffer: AdmissionBuffer
  readonly uploader: Uploader
  readonly deadLetter: DeadLetterShape
  readonly metrics: Metrics
  readonly drainRate: DrainRate
  readonly workers: number
  readonly batchMaxBytes: number
}

export const makeDelivery = (parts: DeliveryParts): Delivery => {
  const { buffer, deadLetter, drainRate, metrics, uploader } = parts
  // One buffer per worker at most: a batch's body is in one until the batch is settled.
  const bodies: BodyBuffers = makeBodyBuffers(Math.min(parts.batchMaxBytes, BODY_BUFFER_BYTES), parts.workers)

  /**
   * `why`: the fields of the log line that say why the batch was not stored. A write that fails,
   * or dies, loses the batch: it is counted lost either way, so the books still balance.
   */
  const deadLetterBatch = (key: string, count: number, body: Uint8Array, why: Record<string, unknown>) =>
    deadLetter.write(key, body).pipe(
      Effect.matchCauseEffect({
        onSuccess: () =>
          Effect.sync(() => {
            buffer.settle(count, "deadLettered")
            metrics.payloadsDeadLettered.inc(count)
          }).pipe(
            Effect.zipRight(Effect.logWarning("batch dead-lettered").pipe(Effect.annotateLogs({ key, payloads: count, ...why })))
          ),
        onFailure: (cause: Cause.Cause<StoreError>) =>
          Effect.sync(() => {
            buffer.settle(count, "lost")
            metrics.payloadsLost.inc(count)
          }).pipe(
            Effect.zipRight(
              Effect.logError("dead-letter write failed: payloads lost").pipe(
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

  /** `acceptances`: when each request of the batch was acknowledged, and its payload count. */
  const markStored = (count: number, acceptances: ReadonlyArray<number>) =>
    Effect.map(Clock.currentTimeMillis, (now) => {
      buffer.settle(count, "stored")
      metrics.payloadsStored.inc(count)
      metrics.objectsStored.inc()
      for (let i = 0; i < acceptances.length; i += 2) {
        metrics.observeDelivery((now - acceptances[i]!) / 1000, acceptances[i + 1]!)
      }
      drainRate.record(count, now)
    })

  const empty = (hold: Hold) => {
    if (hold.body !== undefined) bodies.release(hold.body)
    hold.jobs = []
    hold.lines = 0
    hold.bytes = 0
    hold.key = undefined
    hold.body = undefined
  }

  /** The batch's body, in a reused buffer; from here its slab space is free again. */
  const encode = (hold: Hold): Buffer => {
    const body = bodies.encode(hold.jobs)
    buffer.releaseLines(hold.jobs)
    hold.jobs = []
    hold.body = body
    return body
  }

  const deliver = (hold: Hold, key: string) =>
    Effect.suspend(() => {
      const count = hold.lines
      // Requests acknowledged in the same millisecond are delivered with the same delay: one
      // entry, and one histogram update, for all of them.
      const acceptances: Array<number> = []
      for (const job of hold.jobs) {
        const last = acceptances.length - 2
        if (last >= 0 && acceptances[last] === job.acceptedAt) acceptances[last + 1] = acceptances[last + 1]! + job.count
        else acceptances.push(job.acceptedAt, job.count)
      }
      hold.key = key
      const body = encode(hold)
      // The outcome is booked and the hold emptied in one uninterruptible step, so that the
      // shutdown never finds a booked batch still held and books it a second time.
      const book = (outcome: Effect.Effect<void>) => Effect.uninterruptible(Effect.zipRight(outcome, Effect.sync(() => empty(hold))))
      return uploader.upload(key, body).pipe(
        Effect.matchCauseEffect({
          onSuccess: () => book(markStored(count, acceptances)),
          onFailure: (cause) =>
            book(Option.match(Cause.failureOption(cause), {
              onNone: () =>
                Effect.logError("upload defect", cause).pipe(
                  Effect.zipRight(deadLetterBatch(key, count, body, { reason: "upload defect" }))
                ),
              onSome: (error) => deadLetterBatch(key, count, body, storeErrorFields(error))
            }))
        })
      )
    })

  return {
    deliver,
    deadLetterHold: (hold, newKey) =>
      Effect.gen(function*() {
        if (hold.lines === 0) return
        const key = hold.key ?? (yield* newKey())
        const body = hold.body ?? encode(hold)
        yield* deadLetterBatch(key, hold.lines, body, { reason: "shutdown before upload" })
        empty(hold)
      }),
    deadLetterJobs: (jobs, key) =>
      Effect.suspend(() => {
        let count = 0
        for (const job of jobs) count += job.count
        const body = bodies.encode(jobs)
        buffer.releaseLines(jobs)
        return deadLetterBatch(key, count, body, { reason: "shutdown before upload" }).pipe(
          Effect.ensuring(Effect.sync(() => bodies.release(body)))
        )
      })
  }
}
