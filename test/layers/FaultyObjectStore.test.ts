import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as TestClock from "effect/TestClock"
import { type FaultPlan, noFaults, parseFaults } from "../../src/domain/Faults.js"
import { withFaults } from "../../src/layers/FaultyObjectStore.js"
import { isRetryable, ObjectStore, type StoreError } from "../../src/services/ObjectStore.js"
import { makeMemoryStore } from "../support/stores.js"

const body = new TextEncoder().encode("{\"id\":1}\n")

const planOf = (spec: string): FaultPlan => {
  const plan = parseFaults(spec)
  if ("error" in plan) throw new Error(plan.error)
  return plan
}

const faulty = (spec: string) =>
  Effect.gen(function*() {
    const memory = yield* makeMemoryStore
    const store = withFaults(planOf(spec))(yield* Effect.provide(ObjectStore, memory.layer))
    return { store, memory }
  })

const failureOf = <A>(exit: Exit.Exit<A, StoreError>): StoreError => {
  if (Exit.isFailure(exit) && exit.cause._tag === "Fail") return exit.cause.error
  throw new Error("expected a StoreError")
}

describe("STORE_FAULTS grammar", () => {
  it("parses every rule", () => {
    assert.deepStrictEqual(planOf("latency=200ms±100,error=0.2:SlowDown,hang=0.01,applied-then-500=0.05"), {
      latencyMillis: 200,
      latencyJitterMillis: 100,
      errorRate: 0.2,
      errorCode: "SlowDown",
      hangRate: 0.01,
      appliedThen500Rate: 0.05,
      defectRate: 0
    })
    assert.deepStrictEqual(planOf("latency=50ms"), { ...noFaults, latencyMillis: 50 })
    assert.deepStrictEqual(planOf("error=1"), { ...noFaults, errorRate: 1 })
  })

  for (const bad of ["latency=200", "error=2", "error=0.5:", "hang=-0.1", "explode=1", "hang"]) {
    it(`refuses ${JSON.stringify(bad)}`, () => {
      const plan = parseFaults(bad)
      assert.isTrue("error" in plan)
    })
  }
})

describe("FaultyObjectStore", () => {
  it.effect("error=1:SlowDown fails retryably and writes nothing", () =>
    Effect.gen(function*() {
      const { memory, store } = yield* faulty("error=1:SlowDown")
      const error = failureOf(yield* Effect.exit(store.put("k", body)))
      assert.isTrue(isRetryable(error))
      assert.strictEqual(memory.objects.size, 0)
    }))

  it.effect("error=1:AccessDenied is permanent", () =>
    Effect.gen(function*() {
      const { store } = yield* faulty("error=1:AccessDenied")
      assert.isFalse(isRetryable(failureOf(yield* Effect.exit(store.put("k", body)))))
    }))

  it.effect("applied-then-500=1 writes the object, then fails retryably", () =>
    Effect.gen(function*() {
      const { memory, store } = yield* faulty("applied-then-500=1")
      const error = failureOf(yield* Effect.exit(store.put("k", body)))
      assert.isTrue(isRetryable(error))
      assert.strictEqual(memory.objects.get("k"), "{\"id\":1}\n")
    }))

  it.effect("defect=1 dies: a bug, not a StoreError", () =>
    Effect.gen(function*() {
      const { store } = yield* faulty("defect=1")
      const exit = yield* Effect.exit(store.put("k", body))
      assert.isTrue(Exit.isFailure(exit) && exit.cause._tag === "Die")
    }))

  it.effect("hang=1 never answers until the deadline interrupts it", () =>
    Effect.gen(function*() {
      const { memory, store } = yield* faulty("hang=1")
      const fiber = yield* Effect.fork(Effect.timeoutOption(store.put("k", body), "10 seconds"))
      yield* TestClock.adjust("10 seconds")
      assert.isTrue(Option.isNone(yield* Fiber.join(fiber)))
      assert.strictEqual(memory.objects.size, 0)
    }))

  it.effect("latency=200ms±100 delays each attempt within its bounds", () =>
    Effect.gen(function*() {
      const { memory, store } = yield* faulty("latency=200ms±100")
      // Random 0.75 → +50 ms of jitter.
      const fiber = yield* Effect.fork(Effect.withRandom(store.put("k", body), Random.fixed([0.75, 0.99])))
      yield* TestClock.adjust("249 millis")
      assert.strictEqual(memory.objects.size, 0)
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(fiber)
      assert.strictEqual(memory.objects.size, 1)
    }))
})
