import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Queue from "effect/Queue"
import * as Random from "effect/Random"
import * as TestClock from "effect/TestClock"
import { backoffCeilingMillis } from "../../src/domain/Backoff.js"
import { Metrics } from "../../src/services/Metrics.js"
import { isRetryable, ObjectStore } from "../../src/services/ObjectStore.js"
import { makeUploader } from "../../src/services/delivery/Uploader.js"
import { sample } from "../support/queue.js"
import { makeHangingStore, makeScriptedStore, permanent, retryable, type Step } from "../support/stores.js"

const body = new TextEncoder().encode("{\"id\":1}\n")

/** Breaker settings that never open on retryable failures, for the retry-policy cases. */
const NO_BREAKER = { breakerFailures: 1_000, breakerCooldownMs: 1_000 }

/** Runs an upload over a scripted store with a fixed jitter draw, moving the clock until it ends. */
const runScripted = (steps: ReadonlyArray<Step>, retries: number, jitter: number) =>
  Effect.gen(function*() {
    const store = yield* makeScriptedStore(steps)
    const metrics = yield* Effect.provide(Metrics, Metrics.Default)
    const storeShape = yield* Effect.provide(ObjectStore, store.layer)
    const { upload } = yield* makeUploader(storeShape, metrics, { ...NO_BREAKER, uploadTimeoutMs: 10_000, uploadRetries: retries })
    const fiber = yield* Effect.fork(Effect.withRandom(upload("k", body), Random.fixed([jitter])))
    yield* TestClock.adjust("10 minutes")
    const exit = yield* Fiber.await(fiber)
    const gaps = store.attempts.slice(1).map((a, i) => a.at - store.attempts[i]!.at)
    return { exit, attempts: store.attempts, gaps, metrics }
  })

/** An upload over a store whose every put hangs until interrupted (deadline 10 s, no breaker). */
const hangingUpload = (uploadRetries: number) =>
  Effect.gen(function*() {
    const store = yield* makeHangingStore
    const metrics = yield* Effect.provide(Metrics, Metrics.Default)
    const { upload } = yield* makeUploader(yield* Effect.provide(ObjectStore, store.layer), metrics, {
      ...NO_BREAKER,
      uploadTimeoutMs: 10_000,
      uploadRetries
    })
    return { store, metrics, upload }
  })

describe("Uploader", () => {
  it.scoped("interrupts an attempt at UPLOAD_TIMEOUT_MS and fires its AbortSignal", () =>
    Effect.gen(function*() {
      const { metrics, store, upload } = yield* hangingUpload(0)
      const fiber = yield* Effect.fork(upload("key-1", body))
      yield* Queue.take(store.started)
      yield* TestClock.adjust("9999 millis")
      assert.isFalse(yield* Deferred.isDone(store.aborted), "not aborted before the deadline")
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(yield* Deferred.await(store.aborted), "key-1")
      const exit = yield* Fiber.await(fiber)
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit) && exit.cause._tag === "Fail") {
        assert.isTrue(isRetryable(exit.cause.error))
        assert.match(exit.cause.error.reason, /timed out after 10000 ms/)
      } else {
        assert.fail("expected a StoreError")
      }
      assert.strictEqual(yield* sample(metrics, "s3ingest_upload_attempts_total", { outcome: "timeout" }), 1)
    }))

  it.scoped("interrupting an upload aborts the store's request", () =>
    Effect.gen(function*() {
      const { store, upload } = yield* hangingUpload(5)
      const fiber = yield* Effect.fork(upload("key-2", body))
      yield* Queue.take(store.started)
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(yield* Deferred.await(store.aborted), "key-2")
    }))

  it.scoped("retries retryable failures with full-jitter exponential backoff, then succeeds", () =>
    Effect.gen(function*() {
      const { attempts, exit, gaps, metrics } = yield* runScripted(
        [retryable(), retryable(), retryable(), "ok"],
        5,
        0.5
      )
      assert.isTrue(Exit.isSuccess(exit))
      assert.strictEqual(attempts.length, 4)
      // jitter 0.5 of the ceilings 100, 200, 400 ms
      assert.deepStrictEqual(gaps, [50, 100, 200])
      assert.strictEqual(yield* sample(metrics, "s3ingest_upload_attempts_total", { outcome: "error" }), 3)
      assert.strictEqual(yield* sample(metrics, "s3ingest_upload_attempts_total", { outcome: "ok" }), 1)
    }))

  it.scoped("stops after UPLOAD_RETRIES retries; each wait stays under its ceiling, capped at 5 s", () =>
    Effect.gen(function*() {
      const { attempts, exit, gaps } = yield* runScripted([retryable()], 8, 0.999)
      assert.isTrue(Exit.isFailure(exit))
      assert.strictEqual(attempts.length, 9)
      const ceilings = gaps.map((_, i) => backoffCeilingMillis(i + 1))
      assert.deepStrictEqual(ceilings, [100, 200, 400, 800, 1600, 3200, 5000, 5000])
      assert.deepStrictEqual(gaps, ceilings.map((c) => Math.floor(0.999 * c)))
    }))

  it.scoped("does not retry a permanent error", () =>
    Effect.gen(function*() {
      const { attempts, exit } = yield* runScripted([permanent(), "ok"], 5, 0.5)
      assert.isTrue(Exit.isFailure(exit))
      assert.strictEqual(attempts.length, 1)
    }))
})
