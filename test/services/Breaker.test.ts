/**
 * The store circuit breaker inside the Uploader, on the TestClock: it opens on consecutive
 * retryable failures or one permanent failure, holds batches while open, and probes the store
 * with its check after each cooldown whether or not a batch is waiting.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as Random from "effect/Random"
import * as TestClock from "effect/TestClock"
import { Metrics } from "../../src/services/Metrics.js"
import { ObjectStore, type StoreError } from "../../src/services/ObjectStore.js"
import { makeUploader, type UploaderOptions } from "../../src/services/delivery/Uploader.js"
import { buildQueue, job, offerNow, sample } from "../support/queue.js"
import { makeMemoryDeadLetter, makeScriptedStore, permanent, retryable, type Step } from "../support/stores.js"

const body = new TextEncoder().encode("{\"id\":1}\n")

const uploaderOver = (
  steps: ReadonlyArray<Step>,
  checks: ReadonlyArray<Step>,
  settings: { breakerFailures: number; uploadRetries: number },
  options: UploaderOptions = { whileOpen: "hold" }
) =>
  Effect.gen(function*() {
    const store = yield* makeScriptedStore(steps, checks)
    const metrics = yield* Effect.provide(Metrics, Metrics.Default)
    const uploader = yield* makeUploader(yield* Effect.provide(ObjectStore, store.layer), metrics, {
      uploadTimeoutMs: 10_000,
      breakerCooldownMs: 1_000,
      ...settings
    }, options)
    return { ...uploader, store, metrics }
  })

/** Moves the virtual clock to `millis` (the tests start at 0), firing every sleep due by then. */
const at = (millis: number) => TestClock.setTime(millis)

const failureOf = <A>(exit: Exit.Exit<A, StoreError>): StoreError => {
  if (Exit.isFailure(exit) && exit.cause._tag === "Fail") return exit.cause.error
  throw new Error(`expected a StoreError, got ${String(exit)}`)
}

describe("store circuit breaker", () => {
  it.scoped("opens after BREAKER_FAILURES consecutive failures, probes after a doubling cooldown, closes", () =>
    Effect.gen(function*() {
      const { metrics, storeDown, store, upload } = yield* uploaderOver(
        [retryable(), retryable(), retryable(), "ok"],
        [retryable(), "ok"],
        { breakerFailures: 3, uploadRetries: 5 }
      )
      const fiber = yield* Effect.fork(Effect.withRandom(upload("k", body), Random.fixed([0.5])))
      yield* at(1_000)
      assert.isTrue(storeDown(), "open after the third failure")
      assert.strictEqual(yield* sample(metrics, "s3ingest_store_breaker_state"), 2)
      yield* at(10_000)
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(fiber)))
      // 0, 50, 150: retries with backoff; the breaker opens at 150 for 1 s; the check at 1150
      // fails and reopens it for 2 s; the check at 3150 passes and the held batch goes.
      assert.deepStrictEqual(store.checks, [1150, 3150])
      assert.deepStrictEqual(store.attempts.map((a) => a.at), [0, 50, 150, 3150])
      assert.isFalse(storeDown())
      assert.strictEqual(yield* sample(metrics, "s3ingest_store_breaker_state"), 0)
    }))

  it.scoped("holds a batch through an outage longer than its retry budget instead of failing it", () =>
    Effect.gen(function*() {
      const checks: Array<Step> = [...Array.from({ length: 9 }, () => retryable()), "ok"]
      const { store, upload } = yield* uploaderOver([retryable(), retryable(), "ok"], checks, {
        breakerFailures: 2,
        uploadRetries: 2
      })
      const fiber = yield* Effect.fork(Effect.withRandom(upload("k", body), Random.fixed([0.5])))
      yield* at(10 * 60_000)
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(fiber)))
      assert.strictEqual(store.attempts.length, 3, "no attempt spent while the breaker was open")
      assert.strictEqual(store.checks.length, 10)
      const gaps = store.checks.slice(1).map((t, i) => t - store.checks[i]!)
      assert.deepStrictEqual(gaps, [2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000, 30_000, 30_000])
    }))

  it.scoped("opens at once on a permanent error; other batches wait for the probe", () =>
    Effect.gen(function*() {
      const { storeDown, store, upload } = yield* uploaderOver([permanent(), "ok"], ["ok"], {
        breakerFailures: 5,
        uploadRetries: 5
      })
      const first = yield* Effect.exit(upload("a", body))
      assert.isTrue(Exit.isFailure(first))
      assert.isTrue(storeDown())
      const second = yield* Effect.fork(upload("b", body))
      yield* at(999)
      assert.strictEqual(store.attempts.length, 1, "no attempt while open")
      yield* at(1_000)
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(second)))
      assert.deepStrictEqual(store.attempts.map((a) => [a.key, a.at]), [["a", 0], ["b", 1000]])
      assert.deepStrictEqual(store.checks, [1_000])
      assert.isFalse(storeDown())
    }))

  it.scoped("probes on its timer with no batch waiting, so readiness returns without traffic", () =>
    Effect.gen(function*() {
      const { storeDown, store, upload } = yield* uploaderOver([permanent()], [permanent(), permanent(), "ok"], {
        breakerFailures: 5,
        uploadRetries: 5
      })
      assert.isTrue(Exit.isFailure(yield* Effect.exit(upload("a", body))))
      assert.isTrue(storeDown())
      yield* at(6_999)
      assert.isTrue(storeDown(), "the checks at 1 s and 3 s failed")
      yield* at(7_000)
      assert.isFalse(storeDown(), "the check at 7 s passed")
      assert.deepStrictEqual(store.checks, [1_000, 3_000, 7_000])
      assert.strictEqual(store.attempts.length, 1, "no upload was needed to close it")
    }))

  it.scoped("a check that hangs is cut at UPLOAD_TIMEOUT_MS, one that dies counts as failed: it keeps probing", () =>
    Effect.gen(function*() {
      const { storeDown, store, upload } = yield* uploaderOver([permanent()], ["hang", "die", "ok"], {
        breakerFailures: 5,
        uploadRetries: 5
      })
      assert.isTrue(Exit.isFailure(yield* Effect.exit(upload("a", body))))
      // 1 s: the check hangs until its deadline at 11 s, reopening for 2 s; 13 s: it dies,
      // reopening for 4 s; 17 s: it passes.
      yield* at(16_999)
      assert.isTrue(storeDown())
      yield* at(17_000)
      assert.isFalse(storeDown())
      assert.deepStrictEqual(store.checks, [1_000, 13_000, 17_000])
    }))

  it.scoped("while open, intake sheds above SHED_HIGH_WATER and accepts below it", () =>
    Effect.gen(function*() {
      const store = yield* makeScriptedStore([permanent(), retryable()], [retryable()])
      const dead = yield* makeMemoryDeadLetter
      const { close, queue } = yield* buildQueue(
        { maxWorkers: 1, maxQueue: 10, shedHighWater: 0.5, batchMaxWaitMs: 0, breakerCooldownMs: 60_000 },
        store.layer,
        dead.layer
      )
      assert.strictEqual(offerNow(queue, job(1)), "admitted")
      while (!queue.storeDown()) yield* Effect.yieldNow()
      assert.strictEqual(queue.stats().deadLettered, 1, "the batch that met the permanent error")
      assert.strictEqual(offerNow(queue, job(5, 1)), "admitted")
      assert.strictEqual(offerNow(queue, job(1, 6)), "shedding")
      assert.strictEqual(queue.stats().accepted, 6)
      yield* close(60_000)
    }))
})

describe("store circuit breaker, whileOpen: fail (replay)", () => {
  it.scoped("fails an upload as soon as the breaker opens, without waiting for a cooldown", () =>
    Effect.gen(function*() {
      const { store, upload } = yield* uploaderOver([retryable()], ["ok"], { breakerFailures: 3, uploadRetries: 5 }, {
        whileOpen: "fail"
      })
      const fiber = yield* Effect.fork(Effect.withRandom(upload("a", body), Random.fixed([0.5])))
      yield* at(150)
      const error = failureOf(yield* Fiber.await(fiber))
      assert.strictEqual(error.reason, "SlowDown")
      assert.deepStrictEqual(store.attempts.map((a) => a.at), [0, 50, 150], "three attempts, then it stops")
      // Nothing probes: a later upload fails at once without an attempt.
      yield* at(60_000)
      assert.deepStrictEqual(store.checks, [])
      assert.strictEqual(failureOf(yield* Effect.exit(upload("b", body))).code, "BreakerOpen")
      assert.strictEqual(store.attempts.length, 3)
    }))

  it.scoped("a permanent error fails after one attempt", () =>
    Effect.gen(function*() {
      const { store, upload } = yield* uploaderOver([permanent()], ["ok"], { breakerFailures: 5, uploadRetries: 5 }, {
        whileOpen: "fail"
      })
      assert.strictEqual(failureOf(yield* Effect.exit(upload("a", body))).reason, "AccessDenied")
      assert.strictEqual(store.attempts.length, 1)
    }))
})

/** Every transition the state machine allows. */
const legal = new Set(["closed>open", "open>half-open", "open>closed", "half-open>closed", "half-open>open"])

/** Collects the breaker's transitions from its log lines ("store breaker open", …). */
const transitionLog = Effect.sync(() => {
  const statuses: Array<string> = ["closed"]
  const logger = Logger.make(({ message }) => {
    const text = Array.isArray(message) ? String(message[0]) : String(message)
    const match = /^store breaker (open|half-open|closed)$/.exec(text)
    if (match !== null) statuses.push(match[1]!)
  })
  return { statuses, layer: Logger.replace(Logger.defaultLogger, logger) }
})

describe("store circuit breaker under concurrent workers", () => {
  it.scoped("BREAKER_FAILURES concurrent failures open it exactly once: no worker's update is lost", () =>
    Effect.gen(function*() {
      const log = yield* transitionLog
      const { storeDown, upload } = yield* uploaderOver([retryable()], ["ok"], { breakerFailures: 16, uploadRetries: 0 })
      const uploads = (from: number, count: number) =>
        Effect.forEach(Array.from({ length: count }, (_, i) => `k${from + i}`), (key) => Effect.exit(upload(key, body)), {
          concurrency: "unbounded"
        })
      yield* uploads(0, 15).pipe(Effect.provide(log.layer))
      assert.isFalse(storeDown(), "15 of 16")
      yield* uploads(15, 1).pipe(Effect.provide(log.layer))
      assert.isTrue(storeDown(), "the 16th consecutive failure opens it")
      assert.deepStrictEqual(log.statuses, ["closed", "open"])
    }))

  const outcome = FastCheck.constantFrom<Step>("ok", retryable(), permanent())
  it.scoped.prop(
    "whatever the interleaving of successes and failures, every transition is one the state machine allows",
    [FastCheck.array(FastCheck.tuple(outcome, FastCheck.integer({ min: 0, max: 30 })), { minLength: 1, maxLength: 48 })],
    ([attempts]) =>
      Effect.gen(function*() {
        const log = yield* transitionLog
        let next = 0
        const store = ObjectStore.of({
          put: () =>
            Effect.suspend(() => {
              const [step, delay] = attempts[next++ % attempts.length]!
              return Effect.sleep(Duration.millis(delay)).pipe(
                Effect.zipRight(step === "ok" ? Effect.void : typeof step === "string" ? Effect.die(step) : Effect.fail(step))
              )
            }),
          check: Effect.void
        })
        const metrics = yield* Effect.provide(Metrics, Metrics.Default)
        const uploader = yield* makeUploader(store, metrics, {
          uploadTimeoutMs: 10_000,
          uploadRetries: 1,
          breakerFailures: 3,
          breakerCooldownMs: 100
        })
        const workers = yield* Effect.forkAll(
          Array.from({ length: 16 }, (_, i) => Effect.exit(uploader.upload(`k${i}`, body))),
          { discard: true }
        ).pipe(Effect.provide(log.layer), Effect.fork)
        yield* TestClock.adjust("1 minute")
        yield* Fiber.join(workers)
        for (let i = 1; i < log.statuses.length; i++) {
          const edge = `${log.statuses[i - 1]}>${log.statuses[i]}`
          assert.isTrue(legal.has(edge), `${edge} in ${log.statuses.join(" → ")}`)
        }
        assert.strictEqual(uploader.breakerStatus(), log.statuses.at(-1), "the last logged transition is the state")
        const gauge = yield* sample(metrics, "s3ingest_store_breaker_state")
        assert.strictEqual(gauge, { closed: 0, "half-open": 1, open: 2 }[uploader.breakerStatus()])
      }),
    { fastCheck: { numRuns: 40 } }
  )
})
