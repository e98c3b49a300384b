/**
 * The store-independent upload policy around `ObjectStore.put` (DESIGN §2): a deadline per
 * attempt that interrupts the store (and so aborts its socket), retries of retryable failures
 * with full-jitter backoff, the circuit breaker shared by every worker, and the attempt metrics.
 * The deadlines are kept by one fiber in the caller's scope (Deadlines).
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Exit from "effect/Exit"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import type * as Scope from "effect/Scope"
import { backoffMillis } from "../domain/Backoff.js"
import {
  breakerGauge,
  type BreakerSettings,
  type BreakerState,
  closedBreaker,
  onFailure,
  onSuccess,
  permit
} from "../domain/Breaker.js"
import type { Settings } from "./AppConfig.js"
import { type Deadlines, makeDeadlines } from "./Deadlines.js"
import type { Metrics } from "./Metrics.js"
import { type ObjectStoreShape, StoreError } from "./ObjectStore.js"

export type Upload = (key: string, body: Uint8Array) => Effect.Effect<void, StoreError>

export interface Uploader {
  readonly upload: Upload
  /** True while the breaker is open or probing: `/readyz` answers 503 and intake may shed. */
  readonly storeDown: () => boolean
}

type UploaderSettings = Pick<Settings, "uploadTimeoutMs" | "uploadRetries" | "breakerFailures" | "breakerCooldownMs">

export const makeUploader = (
  store: ObjectStoreShape,
  metrics: Metrics,
  settings: UploaderSettings
): Effect.Effect<Uploader, never, Scope.Scope> =>
  Effect.map(makeDeadlines(settings.uploadTimeoutMs), (deadlines) => uploaderWith(store, metrics, settings, deadlines))

const uploaderWith = (
  store: ObjectStoreShape,
  metrics: Metrics,
  settings: UploaderSettings,
  deadlines: Deadlines
): Uploader => {
  const breakerSettings: BreakerSettings = {
    failures: settings.breakerFailures,
    cooldownMillis: settings.breakerCooldownMs
  }
  let breaker: BreakerState = closedBreaker(breakerSettings)

  const transition = (next: BreakerState, reason?: string) =>
    Effect.suspend(() => {
      const before = breaker.status
      breaker = next
      metrics.setBreakerState(breakerGauge(next.status))
      if (before === next.status) return Effect.void
      // Logged per transition, not per payload or attempt: a store that is down for an hour
      // writes a line per cooldown, not a flood.
      return next.status === "open"
        ? Effect.logWarning("store breaker open").pipe(
          Effect.annotateLogs({ cooldownMs: next.cooldownMillis, ...(reason === undefined ? {} : { reason }) })
        )
        : Effect.logInfo(`store breaker ${next.status}`)
    })

  /** Waits until the breaker lets an attempt through; true when that attempt is the probe. */
  const enterOpen: Effect.Effect<boolean> = Effect.gen(function*() {
    while (true) {
      const decision = permit(breaker, yield* Clock.currentTimeMillis)
      if (decision._tag === "Attempt") {
        yield* transition(decision.next)
        return decision.probe
      }
      yield* Effect.sleep(Duration.millis(decision.millis))
    }
  })
  // A closed breaker lets every attempt through unchanged: that path, taken once per batch, needs
  // neither the clock nor a transition.
  const notProbe = Effect.succeed(false)
  const enter: Effect.Effect<boolean> = Effect.suspend(() => breaker.status === "closed" ? notProbe : enterOpen)

  const attempt = (key: string, body: Uint8Array) =>
    Effect.gen(function*() {
      const started = yield* Clock.currentTimeMillis
      const result = yield* Effect.either(deadlines.within(store.put(key, body)))
      const elapsed = (yield* Clock.currentTimeMillis) - started
      metrics.uploadDuration.observe(elapsed / 1000)
      if (result._tag === "Left") {
        metrics.attempt("error")
        return Option.some(result.left)
      }
      if (Option.isNone(result.right)) {
        metrics.attempt("timeout")
        return Option.some(
          new StoreError({ retryable: true, reason: `attempt timed out after ${settings.uploadTimeoutMs} ms` })
        )
      }
      metrics.attempt("ok")
      return Option.none<StoreError>()
    })

  const upload: Upload = (key, body) =>
    Effect.gen(function*() {
      let retriesUsed = 0
      while (true) {
        const probe = yield* enter
        const failure = yield* attempt(key, body).pipe(
          // A probe that dies or is interrupted must still hand the half-open slot back,
          // or no probe would ever run again.
          Effect.onExit((exit) =>
            probe && Exit.isFailure(exit)
              ? Effect.flatMap(Clock.currentTimeMillis, (now) =>
                transition(onFailure(breaker, breakerSettings, now, { retryable: true, probe }), "probe did not finish"))
              : Effect.void
          )
        )
        if (Option.isNone(failure)) {
          // Any success proves the store works: it resets the count of consecutive failures too.
          if (breaker.status !== "closed" || breaker.failures > 0) yield* transition(onSuccess(breakerSettings))
          return
        }
        const error = failure.value
        yield* transition(
          onFailure(breaker, breakerSettings, yield* Clock.currentTimeMillis, { retryable: error.retryable, probe }),
          error.reason
        )
        yield* Effect.logDebug("upload attempt failed").pipe(
          Effect.annotateLogs({ key, reason: error.reason, retryable: error.retryable, probe })
        )
        if (!error.retryable) return yield* error
        // A failed probe only confirms the outage: it does not spend this batch's retries, so
        // batches are held, not dead-lettered, while the store is down.
        if (!probe) {
          if (retriesUsed >= settings.uploadRetries) return yield* error
          retriesUsed++
          const wait = backoffMillis(retriesUsed, yield* Random.next)
          yield* Effect.sleep(Duration.millis(wait))
        }
      }
    })

  return { upload, storeDown: () => breaker.status !== "closed" }
}
