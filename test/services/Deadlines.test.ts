import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import { makeDeadlines } from "../../src/services/delivery/Deadlines.js"

/** An effect that never finishes and records that it was interrupted. */
const hanging = Effect.gen(function*() {
  const interrupted = yield* Deferred.make<void>()
  const self = Effect.never.pipe(Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined)))
  return { self, interrupted }
})

describe("Deadlines", () => {
  it.scoped("gives the result of an effect that finishes in time, and None at the deadline, interrupting it", () =>
    Effect.gen(function*() {
      const { within } = yield* makeDeadlines(100)
      const quick = yield* Effect.fork(within(Effect.as(Effect.sleep("99 millis"), "done")))
      yield* TestClock.adjust("99 millis")
      assert.strictEqual(Option.getOrUndefined(yield* Fiber.join(quick)), "done")

      const { interrupted, self } = yield* hanging
      const slow = yield* Effect.fork(within(self))
      yield* TestClock.adjust("99 millis")
      assert.isFalse(yield* Deferred.isDone(interrupted))
      yield* TestClock.adjust("1 millis")
      assert.isTrue(Option.isNone(yield* Fiber.join(slow)))
      assert.isTrue(yield* Deferred.isDone(interrupted))
    }))

  it.scoped("keeps each effect's own deadline when one started before it finished early", () =>
    Effect.gen(function*() {
      const { within } = yield* makeDeadlines(100)
      // The first is due at 100 and finishes at 60; the second starts at 50, so it is due at 150.
      const first = yield* Effect.fork(within(Effect.sleep("60 millis")))
      yield* TestClock.adjust("50 millis")
      const { interrupted, self } = yield* hanging
      const second = yield* Effect.fork(within(self))
      yield* TestClock.adjust("10 millis")
      assert.isTrue(Option.isSome(yield* Fiber.join(first)))
      yield* TestClock.adjust("89 millis")
      assert.isFalse(yield* Deferred.isDone(interrupted), "not at 149")
      yield* TestClock.adjust("1 millis")
      assert.isTrue(Option.isNone(yield* Fiber.join(second)))
      // And it keeps working for effects that start after it went idle.
      const third = yield* Effect.fork(within(Effect.never))
      yield* TestClock.adjust("100 millis")
      assert.isTrue(Option.isNone(yield* Fiber.join(third)))
    }))

  it.scoped("passes failures and defects through as they are", () =>
    Effect.gen(function*() {
      const { within } = yield* makeDeadlines(100)
      const failed = yield* Effect.exit(within(Effect.fail("no")))
      assert.isTrue(Exit.isFailure(failed) && failed.cause._tag === "Fail" && failed.cause.error === "no")
      const died = yield* Effect.exit(within(Effect.die("boom")))
      assert.isTrue(Exit.isFailure(died) && died.cause._tag === "Die")
    }))

  it.scoped("interrupts the effect, and waits for it, when the caller is interrupted", () =>
    Effect.gen(function*() {
      const { within } = yield* makeDeadlines(10_000)
      const cleaned = yield* Deferred.make<void>()
      const started = yield* Deferred.make<void>()
      const self = Deferred.succeed(started, undefined).pipe(
        Effect.zipRight(Effect.never),
        // Cleanup that takes time: the caller's interruption must wait for it.
        Effect.onInterrupt(() => Effect.zipRight(Effect.sleep("5 millis"), Deferred.succeed(cleaned, undefined)))
      )
      const caller = yield* Effect.fork(within(self))
      yield* Deferred.await(started)
      const interrupting = yield* Effect.fork(Fiber.interrupt(caller))
      yield* TestClock.adjust("5 millis")
      yield* Fiber.join(interrupting)
      assert.isTrue(yield* Deferred.isDone(cleaned))
    }))
})
