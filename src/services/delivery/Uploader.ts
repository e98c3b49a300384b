/**
 * The store-independent upload policy around `ObjectStore.put`: a deadline per attempt that
 * interrupts the store (and so aborts its socket), retries of retryable failures with
 * full-jitter backoff, the circuit breaker shared by every worker, and the attempt metrics.
 * The deadlines are kept by one fiber in the caller's scope (Deadlines).
 *
 * While the breaker is open the service holds its batches (`whileOpen: "hold"`): an upload waits
 * for the breaker to close, and one fiber probes the store with `ObjectStore.check` each time a
 * cooldown ends, whether or not a batch is waiting, so a replica that a load balancer took out
 * of rotation still notices that its store came back. A one-shot command (`replay`) cannot wait
 * out an outage: with `whileOpen: "fail"` an upload fails as soon as the breaker opens.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { backoffMillis } from "../../domain/Backoff.js"
import {
  breakerGauge,
  type BreakerSettings,
  type BreakerState,
  type BreakerStatus,
  closedBreaker,
  onFailure,
  onProbeFailure,
  onProbeStart,
  onProbeSuccess,
  onSuccess,
  probeDue
} from "../../domain/Breaker.js"
import type { Settings } from "../AppConfig.js"
import { type Deadlines, makeDeadlines } from "./Deadlines.js"
import type { Metrics } from "../Metrics.js"
import { isRetryable, type ObjectStoreShape, storeError, type StoreError, storeErrorFields } from "../ObjectStore.js"

export type Upload = (key: string, body: Uint8Array) => Effect.Effect<void, StoreError>

export interface Uploader {
  readonly upload: Upload
  /** True while the breaker is open or probing: `/readyz` answers 503 and intake may shed. */
  readonly storeDown: () => boolean
  readonly breakerStatus: () => BreakerStatus
}

export type UploaderSettings = Pick<
  Settings,
  "uploadTimeoutMs" | "uploadRetries" | "breakerFailures" | "breakerCooldownMs"
>

export interface UploaderOptions {
  readonly whileOpen: "hold" | "fail"
}

export const makeUploader = (
  store: ObjectStoreShape,
  metrics: Metrics,
  settings: UploaderSettings,
  options: UploaderOptions = { whileOpen: "hold" }
): Effect.Effect<Uploader, never, Scope.Scope> =>
  Effect.gen(function*() {
    const deadlines = yield* makeDeadlines(settings.uploadTimeoutMs)
    const breaker = yield* makeBreaker(metrics, {
      failures: settings.breakerFailures,
      cooldownMillis: settings.breakerCooldownMs
    })
    if (options.whileOpen === "hold") {
      // Layers are built uninterruptibly and a fork inherits that.
      yield* Effect.forkScoped(Effect.interruptible(probeWhenDue(breaker, store, deadlines, settings)))
    }
    return uploaderWith(store, metrics, settings, options, deadlines, breaker)
  })

interface Breaker {
  readonly state: () => BreakerState
  /** Moves to `f(state)` in one step, so concurrent workers cannot lose each other's updates. */
  readonly update: (f: (state: BreakerState) => BreakerState, failure?: StoreError) => Effect.Effect<void>
  /** Waits until the breaker is closed. */
  readonly closed: Effect.Effect<void>
  /** Waits until the breaker is open (not probing). */
  readonly opened: Effect.Effect<void>
  readonly settings: BreakerSettings
}

const makeBreaker = (metrics: Metrics, settings: BreakerSettings): Effect.Effect<Breaker> =>
  Effect.gen(function*() {
    let state = closedBreaker(settings)
    const closedGate = yield* Effect.makeLatch(true)
    const openGate = yield* Effect.makeLatch(false)
    metrics.setBreakerState(0)

    const update = (f: (state: BreakerState) => BreakerState, failure?: StoreError) =>
      Effect.suspend(() => {
        const before = state.status
        state = f(state)
        if (state.status === "closed") closedGate.unsafeOpen()
        else closedGate.unsafeClose()
        if (state.status === "open") openGate.unsafeOpen()
        else openGate.unsafeClose()
        metrics.setBreakerState(breakerGauge(state.status))
        if (before === state.status) return Effect.void
        // Logged per transition, not per payload or attempt: a store that is down for an hour
        // writes a line per cooldown, not a flood.
        return state.status === "open"
          ? Effect.logWarning("store breaker open").pipe(
            Effect.annotateLogs({
              cooldownMs: state.cooldownMillis,
              ...(failure === undefined ? {} : storeErrorFields(failure))
            })
          )
          : Effect.logInfo(`store breaker ${state.status}`)
      })

    return { state: () => state, update, closed: closedGate.await, opened: openGate.await, settings }
  })

/**
 * The half-open probe: each time the breaker's cooldown ends, one store check under the upload
 * deadline. An upload that settles while the check runs decides instead (a success closes the
 * breaker), and the check's outcome is then dropped.
 */
const probeWhenDue = (
  breaker: Breaker,
  store: ObjectStoreShape,
  deadlines: Deadlines,
  settings: UploaderSettings
): Effect.Effect<never> =>
  Effect.gen(function*() {
    yield* breaker.opened
    const now = yield* Clock.currentTimeMillis
    if (!probeDue(breaker.state(), now)) {
      return yield* Effect.sleep(Duration.millis(breaker.state().openUntil - now))
    }
    yield* breaker.update(onProbeStart)
    const exit = yield* Effect.exit(deadlines.within(store.check))
    const after = yield* Clock.currentTimeMillis
    if (Exit.isSuccess(exit) && Option.isSome(exit.value)) return yield* breaker.update(onProbeSuccess)
    const failure = Exit.match(exit, {
      onSuccess: () =>
        storeError({
          retryable: true,
          reason: `store check timed out after ${settings.uploadTimeoutMs} ms`,
          code: "Timeout"
        }),
      onFailure: (cause) =>
        Option.getOrElse(Cause.failureOption(cause), () => storeError({ retryable: true, reason: "store check died" }))
    })
    yield* breaker.update((state) => onProbeFailure(state, after), failure)
  }).pipe(Effect.forever)

const uploaderWith = (
  store: ObjectStoreShape,
  metrics: Metrics,
  settings: UploaderSettings,
  options: UploaderOptions,
  deadlines: Deadlines,
  breaker: Breaker
): Uploader => {
  const failFast = options.whileOpen === "fail"
  const breakerOpen = storeError({ retryable: true, reason: "store breaker open", code: "BreakerOpen" })
  // A closed breaker lets every attempt through: that path, taken once per batch, costs one check.
  const enter: Effect.Effect<void, StoreError> = Effect.suspend(() =>
    breaker.state().status === "closed" ? Effect.void : failFast ? Effect.fail(breakerOpen) : breaker.closed
  )

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
          storeError({
            retryable: true,
            reason: `attempt timed out after ${settings.uploadTimeoutMs} ms`,
            code: "Timeout"
          })
        )
      }
      metrics.attempt("ok")
      return Option.none<StoreError>()
    })

  const base = breaker.settings.cooldownMillis
  /** One attempt, once the breaker lets it through, with the breaker told of its outcome. */
  const attemptOnce = (key: string, body: Uint8Array) =>
    Effect.gen(function*() {
      yield* enter
      const failure = yield* attempt(key, body)
      if (Option.isNone(failure)) {
        // Any success proves the store works: it resets the count of consecutive failures and
        // the cooldown too.
        const state = breaker.state()
        if (state.status !== "closed" || state.failures > 0 || state.cooldownMillis !== base) {
          yield* breaker.update(() => onSuccess(breaker.settings))
        }
        return
      }
      const error = failure.value
      const now = yield* Clock.currentTimeMillis
      yield* breaker.update((state) => onFailure(state, breaker.settings, now, isRetryable(error)), error)
      yield* Effect.logDebug("upload attempt failed").pipe(Effect.annotateLogs({ key, ...storeErrorFields(error) }))
      return yield* error
    })

  /**
   * Up to UPLOAD_RETRIES retries of a retryable failure, each after a full-jitter backoff; in
   * fail mode none once the breaker is open. In hold mode a retry that meets an open breaker
   * waits in `enter` for it to close.
   */
  const retries = Schedule.recurs(settings.uploadRetries).pipe(
    Schedule.whileInput((error: StoreError) => isRetryable(error) && !(failFast && breaker.state().status !== "closed")),
    Schedule.addDelayEffect((retried) => Effect.map(Random.next, (r) => Duration.millis(backoffMillis(retried + 1, r))))
  )

  const upload: Upload = (key, body) => Effect.retry(attemptOnce(key, body), retries)

  return {
    upload,
    storeDown: () => breaker.state().status !== "closed",
    breakerStatus: () => breaker.state().status
  }
}
