import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Random from "effect/Random"
import * as TestClock from "effect/TestClock"
import { Metrics } from "../../src/services/Metrics.js"
import { ObjectStore } from "../../src/services/ObjectStore.js"
import { makeUploader } from "../../src/services/Uploader.js"
import { buildQueue, job, sample } from "../support/queue.js"
import { makeMemoryDeadLetter, makeScriptedStore, permanent, retryable, type Step } from "../support/stores.js"

const body = new TextEncoder().encode("{\"id\":1}\n")

const uploaderOver = (steps: ReadonlyArray<Step>, settings: { breakerFailures: number; uploadRetries: number }) =>
  Effect.gen(function*() {
    const store = yield* makeScriptedStore(steps)
    const metrics = yield* Effect.provide(Metrics, Metrics.Default)
    const uploader = yield* makeUploader(yield* Effect.provide(ObjectStore, store.layer), metrics, {
      uploadTimeoutMs: 10_000,
      breakerCooldownMs: 1_000,
      ...settings
    })
    return { ...uploader, store, metrics }
  })

describe("store circuit breaker", () => {
  it.scoped("opens after BREAKER_FAILURES consecutive failures, probes after a doubling cooldown, closes", () =>
    Effect.gen(function*() {
      const { metrics, storeDown, store, upload } = yield* uploaderOver(
        [retryable(), retryable(), retryable(), retryable(), "ok"],
        { breakerFailures: 3, uploadRetries: 5 }
      )
      const fiber = yield* Effect.fork(Effect.withRandom(upload("k", body), Random.fixed([0.5])))
      yield* TestClock.adjust("1 second")
      assert.isTrue(storeDown(), "open after the third failure")
      assert.strictEqual(yield* sample(metrics, "s3ingest_store_breaker_state"), 2)
      yield* TestClock.adjust("10 seconds")
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(fiber)))
      // 0, 50, 150: retries with backoff; the breaker opens at 150 for 1 s; the probe at 1150
      // fails and reopens it for 2 s; the probe at 3150 succeeds.
      assert.deepStrictEqual(store.attempts.map((a) => a.at), [0, 50, 150, 1150, 3150])
      assert.isFalse(storeDown())
      assert.strictEqual(yield* sample(metrics, "s3ingest_store_breaker_state"), 0)
    }))

  it.scoped("holds a batch through an outage longer than its retry budget instead of failing it", () =>
    Effect.gen(function*() {
      const steps: Array<Step> = [...Array.from({ length: 12 }, () => retryable()), "ok"]
      const { store, upload } = yield* uploaderOver(steps, { breakerFailures: 2, uploadRetries: 2 })
      const fiber = yield* Effect.fork(Effect.withRandom(upload("k", body), Random.fixed([0.5])))
      yield* TestClock.adjust("10 minutes")
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(fiber)))
      assert.strictEqual(store.attempts.length, 13)
      const gaps = store.attempts.slice(1).map((a, i) => a.at - store.attempts[i]!.at)
      assert.isTrue(gaps.every((g) => g <= 30_000), "cooldown capped at 30 s")
      assert.strictEqual(Math.max(...gaps), 30_000)
    }))

  it.scoped("opens at once on a permanent error; other batches wait for the probe", () =>
    Effect.gen(function*() {
      const { storeDown, store, upload } = yield* uploaderOver([permanent(), "ok"], {
        breakerFailures: 5,
        uploadRetries: 5
      })
      const first = yield* Effect.exit(upload("a", body))
      assert.isTrue(Exit.isFailure(first))
      assert.isTrue(storeDown())
      const second = yield* Effect.fork(upload("b", body))
      yield* TestClock.adjust("999 millis")
      assert.strictEqual(store.attempts.length, 1, "no attempt while open")
      yield* TestClock.adjust("1 millis")
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(second)))
      assert.deepStrictEqual(store.attempts.map((a) => [a.key, a.at]), [["a", 0], ["b", 1000]])
      assert.isFalse(storeDown())
    }))

  it.scoped("while open, intake sheds above SHED_HIGH_WATER and accepts below it", () =>
    Effect.gen(function*() {
      const store = yield* makeScriptedStore([permanent(), retryable()])
      const dead = yield* makeMemoryDeadLetter
      const { close, queue } = yield* buildQueue(
        { maxWorkers: 1, maxQueue: 10, shedHighWater: 0.5, batchMaxWaitMs: 0, breakerCooldownMs: 60_000 },
        store.layer,
        dead.layer
      )
      assert.strictEqual(queue.offer(job(1)), "admitted")
      while (!queue.storeDown()) yield* Effect.yieldNow()
      assert.strictEqual(queue.stats().deadLettered, 1, "the batch that met the permanent error")
      assert.strictEqual(queue.offer(job(5, 1)), "admitted")
      assert.strictEqual(queue.offer(job(1, 6)), "shedding")
      assert.strictEqual(queue.stats().accepted, 6)
      yield* close(60_000)
    }))
})
