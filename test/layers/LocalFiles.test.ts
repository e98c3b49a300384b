/**
 * The group commit of directory fsyncs (`makeSharedSync`): a caller's rename is durable only once
 * a sync of its directory that started after the caller joined has finished. The sync here is a
 * stand-in whose rounds the test starts and ends by hand.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import { makeSharedSync } from "../../src/layers/LocalFiles.js"

/**
 * `makeSharedSync` in the test's scope over a directory sync that records each round it starts
 * and ends it only when the test calls `finish`.
 */
const sharedSyncUnderTest = Effect.gen(function*() {
  const rounds: Array<{ readonly dir: string; readonly end: Deferred.Deferred<void, string> }> = []
  const sync = (dir: string) =>
    Effect.gen(function*() {
      const end = yield* Deferred.make<void, string>()
      rounds.push({ dir, end })
      yield* Deferred.await(end)
    })
  /** Waits until `count` rounds have started. */
  const started = (count: number) =>
    Effect.gen(function*() {
      while (rounds.length < count) yield* Effect.yieldNow()
    })
  const finish = (round: number) => Deferred.succeed(rounds[round]!.end, undefined)
  return { rounds, started, finish, syncAfterRename: makeSharedSync(sync, yield* Effect.scope) }
})

const pending = <A, E>(fiber: Fiber.RuntimeFiber<A, E>) => Effect.map(Fiber.poll(fiber), Option.isNone)

describe("LocalFiles", () => {
  describe("makeSharedSync", () => {
    it.scoped("callers who join while a sync runs wait for the next one, and share it", () =>
      Effect.gen(function*() {
        const { finish, rounds, started, syncAfterRename } = yield* sharedSyncUnderTest

        const first = yield* Effect.fork(syncAfterRename("hour"))
        yield* started(1)
        // Joined while round 1 runs: round 1 may have started before their renames.
        const second = yield* Effect.fork(syncAfterRename("hour"))
        const third = yield* Effect.fork(syncAfterRename("hour"))
        yield* Effect.yieldNow()
        assert.strictEqual(rounds.length, 1)

        yield* finish(0)
        yield* Fiber.join(first)
        yield* started(2)
        assert.isTrue(yield* pending(second))
        assert.isTrue(yield* pending(third))

        yield* finish(1)
        yield* Fiber.join(second)
        yield* Fiber.join(third)
        // Three callers, two syncs; with nobody waiting no third round starts.
        for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
        assert.strictEqual(rounds.length, 2)

        // A later caller starts a round of its own.
        const fourth = yield* Effect.fork(syncAfterRename("hour"))
        yield* started(3)
        yield* finish(2)
        yield* Fiber.join(fourth)
      }))

    it.scoped("directories are synced apart", () =>
      Effect.gen(function*() {
        const { finish, rounds, started, syncAfterRename } = yield* sharedSyncUnderTest

        const one = yield* Effect.fork(syncAfterRename("a"))
        const other = yield* Effect.fork(syncAfterRename("b"))
        yield* started(2)
        assert.deepStrictEqual(rounds.map((round) => round.dir).sort(), ["a", "b"])
        yield* finish(rounds.findIndex((round) => round.dir === "b"))
        yield* Fiber.join(other)
        assert.isTrue(yield* pending(one))
        yield* finish(rounds.findIndex((round) => round.dir === "a"))
        yield* Fiber.join(one)
      }))

    it.scoped("a failed sync fails every caller of its round; the next round is tried afresh", () =>
      Effect.gen(function*() {
        const { finish, rounds, started, syncAfterRename } = yield* sharedSyncUnderTest

        const first = yield* Effect.fork(syncAfterRename("hour"))
        yield* started(1)
        const second = yield* Effect.fork(syncAfterRename("hour"))
        yield* Deferred.fail(rounds[0]!.end, "EIO")
        assert.deepStrictEqual(yield* Fiber.await(first), Exit.fail("EIO"))

        yield* started(2)
        yield* finish(1)
        assert.isTrue(Exit.isSuccess(yield* Fiber.await(second)))
      }))

    it.scoped("an interrupted caller leaves the rounds running for the others", () =>
      Effect.gen(function*() {
        const { finish, started, syncAfterRename } = yield* sharedSyncUnderTest

        // The caller that started the rounds gives up (an upload deadline, say) mid-sync.
        const first = yield* Effect.fork(syncAfterRename("hour"))
        yield* started(1)
        const second = yield* Effect.fork(syncAfterRename("hour"))
        yield* Fiber.interrupt(first)

        yield* finish(0)
        yield* started(2)
        yield* finish(1)
        assert.isTrue(Exit.isSuccess(yield* Fiber.await(second)))
      }))
  })
})
