/**
 * The store-independent upload policy around `ObjectStore.put`: a deadline per attempt that
 * interrupts the store (and so aborts its socket), retries of retryable failures with full-jitter
 * backoff, and the attempt metrics. The circuit breaker will sit here too.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import { backoffMillis } from "../domain/Backoff.js"
import type { Settings } from "./AppConfig.js"
import type { Metrics } from "./Metrics.js"
import { type ObjectStoreShape, StoreError } from "./ObjectStore.js"

export type Upload = (key: string, body: Uint8Array) => Effect.Effect<void, StoreError>

export const makeUploader = (
  store: ObjectStoreShape,
  metrics: Metrics,
  settings: Pick<Settings, "uploadTimeoutMs" | "uploadRetries">
): Upload => {
  const deadline = Duration.millis(settings.uploadTimeoutMs)

  const attempt = (key: string, body: Uint8Array) =>
    Effect.gen(function*() {
      const started = yield* Clock.currentTimeMillis
      const result = yield* store.put(key, body).pipe(Effect.timeoutOption(deadline), Effect.either)
      const elapsed = (yield* Clock.currentTimeMillis) - started
      metrics.uploadDuration.observe(elapsed / 1000)
      if (result._tag === "Left") {
        metrics.attempt("error")
        yield* Effect.logDebug("upload attempt failed").pipe(
          Effect.annotateLogs({ key, reason: result.left.reason, retryable: result.left.retryable })
        )
        return yield* result.left
      }
      if (Option.isNone(result.right)) {
        metrics.attempt("timeout")
        yield* Effect.logDebug("upload attempt timed out").pipe(Effect.annotateLogs({ key }))
        return yield* new StoreError({
          retryable: true,
          reason: `attempt timed out after ${settings.uploadTimeoutMs} ms`
        })
      }
      metrics.attempt("ok")
    })

  // recurs counts retries from 0; the wait before retry n+1 is drawn from [0, min(5 s, 100 ms·2^n)).
  const schedule = Schedule.recurs(settings.uploadRetries).pipe(
    Schedule.addDelayEffect((retry) => Effect.map(Random.next, (r) => Duration.millis(backoffMillis(retry + 1, r))))
  )

  return (key, body) =>
    attempt(key, body).pipe(
      Effect.retry({ schedule, while: (error) => error.retryable })
    )
}
