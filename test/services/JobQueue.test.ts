import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as TestClock from "effect/TestClock"
import { jobBytes } from "../../src/domain/Batch.js"
import { keyFileName } from "../../src/domain/Keys.js"
import { awaitSleepers, buildQueue, ids, lines, sample } from "../support/queue.js"
import {
  FailingDeadLetter,
  makeHangingStore,
  makeMemoryDeadLetter,
  makeMemoryStore,
  makeScriptedStore,
  permanent
} from "../support/stores.js"

const KEY = /^payloads\/\d{4}\/\d{2}\/\d{2}\/\d{2}\/\d{8}T\d{9}Z-[0-9a-f]{8}-\d{8}\.ndjson$/

describe("JobQueue admission", () => {
  it.effect("is all-or-nothing at the payload bound", () =>
    Effect.gen(function*() {
      const store = yield* makeMemoryStore
      const dead = yield* makeMemoryDeadLetter
      const { close, queue } = yield* buildQueue({ maxQueue: 5, maxWorkers: 1 }, store.layer, dead.layer)
      // One synchronous block: no worker can take lines between the offers.
      const outcomes = yield* Effect.sync(() => [
        queue.offerAll(lines(3), 0),
        queue.offerAll(lines(3, 3), 0),
        queue.offerAll(lines(2, 6), 0),
        queue.offerAll(lines(1, 8), 0)
      ])
      assert.deepStrictEqual(outcomes, ["admitted", "full", "admitted", "full"])
      assert.strictEqual(queue.stats().queued, 5)
      assert.strictEqual(queue.stats().accepted, 5)
      assert.strictEqual(queue.offerAll(lines(6), 0), "too_large")
      yield* close(1_000)
      const stored = [...store.objects.values()].flatMap(ids).sort((a, b) => a - b)
      assert.deepStrictEqual(stored, [0, 1, 2, 6, 7])
    }))

  it.effect("is all-or-nothing at the byte bound", () =>
    Effect.gen(function*() {
      const store = yield* makeMemoryStore
      const dead = yield* makeMemoryDeadLetter
      const size = jobBytes({ line: lines(1)[0]!, acceptedAt: 0 })
      const { close, queue } = yield* buildQueue(
        { maxQueueBytes: size * 4, maxWorkers: 1 },
        store.layer,
        dead.layer
      )
      const outcomes = yield* Effect.sync(() => [
        queue.offerAll(lines(3), 0),
        queue.offerAll(lines(2, 3), 0),
        queue.offerAll(lines(1, 5), 0)
      ])
      assert.deepStrictEqual(outcomes, ["admitted", "full", "admitted"])
      assert.strictEqual(queue.stats().queuedBytes, size * 4)
      yield* close(1_000)
      assert.deepStrictEqual([...store.objects.values()].flatMap(ids).sort(), [0, 1, 2, 5])
    }))

  it.effect("refuses once intake is closed", () =>
    Effect.gen(function*() {
      const store = yield* makeMemoryStore
      const dead = yield* makeMemoryDeadLetter
      const { close, lifecycle, queue } = yield* buildQueue({}, store.layer, dead.layer)
      lifecycle.intakeOpen = false
      assert.strictEqual(queue.offerAll(lines(1), 0), "closed")
      assert.strictEqual(queue.stats().accepted, 0)
      yield* close(0)
    }))
})

describe("JobQueue batching", () => {
  it.effect("closes a batch on items without waiting, and on the wait after its first line", () =>
    Effect.gen(function*() {
      const store = yield* makeMemoryStore
      const dead = yield* makeMemoryDeadLetter
      const { close, queue } = yield* buildQueue(
        { maxWorkers: 1, batchMaxItems: 3, batchMaxWaitMs: 200 },
        store.layer,
        dead.layer
      )
      queue.offerAll(lines(7), 0)
      // Two full batches go without the clock moving at all.
      const first = yield* Queue.take(store.puts)
      const second = yield* Queue.take(store.puts)
      assert.deepStrictEqual(ids(store.objects.get(first)!), [0, 1, 2])
      assert.deepStrictEqual(ids(store.objects.get(second)!), [3, 4, 5])
      // The last line waits for company until BATCH_MAX_WAIT_MS has passed.
      yield* awaitSleepers(1)
      yield* TestClock.adjust("199 millis")
      assert.strictEqual(yield* Queue.size(store.puts), 0)
      yield* TestClock.adjust("1 millis")
      const third = yield* Queue.take(store.puts)
      assert.deepStrictEqual(ids(store.objects.get(third)!), [6])
      for (const key of [first, second, third]) assert.match(key, KEY)
      assert.notStrictEqual(first, second)
      yield* close(0)
    }))

  it.effect("fills an open batch with lines that arrive during its wait", () =>
    Effect.gen(function*() {
      const store = yield* makeMemoryStore
      const dead = yield* makeMemoryDeadLetter
      const { close, queue } = yield* buildQueue({ maxWorkers: 4, batchMaxWaitMs: 200 }, store.layer, dead.layer)
      queue.offerAll(lines(2), 0)
      yield* awaitSleepers(1)
      yield* TestClock.adjust("100 millis")
      queue.offerAll(lines(3, 2), 0)
      yield* TestClock.adjust("100 millis")
      const key = yield* Queue.take(store.puts)
      assert.deepStrictEqual(ids(store.objects.get(key)!), [0, 1, 2, 3, 4])
      assert.strictEqual(store.objects.size, 1)
      yield* close(0)
    }))

  it.effect("closes a batch on bytes and carries the overflowing line to the next", () =>
    Effect.gen(function*() {
      const store = yield* makeMemoryStore
      const dead = yield* makeMemoryDeadLetter
      const size = jobBytes({ line: lines(1)[0]!, acceptedAt: 0 })
      const { close, queue } = yield* buildQueue(
        { maxWorkers: 1, batchMaxBytes: size * 2, batchMaxWaitMs: 200 },
        store.layer,
        dead.layer
      )
      queue.offerAll(lines(5), 0)
      const first = yield* Queue.take(store.puts)
      const second = yield* Queue.take(store.puts)
      assert.deepStrictEqual(ids(store.objects.get(first)!), [0, 1])
      assert.deepStrictEqual(ids(store.objects.get(second)!), [2, 3])
      assert.strictEqual(Buffer.byteLength(store.objects.get(first)!), size * 2)
      yield* awaitSleepers(1)
      yield* TestClock.adjust("200 millis")
      assert.deepStrictEqual(ids(store.objects.get(yield* Queue.take(store.puts))!), [4])
      yield* close(0)
    }))
})

describe("JobQueue shutdown", () => {
  it.effect("drains on scope close: everything queued is uploaded, exit code 0", () =>
    Effect.gen(function*() {
      const store = yield* makeMemoryStore
      const dead = yield* makeMemoryDeadLetter
      const { close, lifecycle, metrics, queue } = yield* buildQueue(
        { maxWorkers: 2, batchMaxItems: 3, batchMaxWaitMs: 10_000 },
        store.layer,
        dead.layer
      )
      queue.offerAll(lines(10), 0)
      // No clock movement: closing intake lets open batches go without their wait.
      yield* close(0)
      const stored = [...store.objects.values()].flatMap(ids).sort((a, b) => a - b)
      assert.deepStrictEqual(stored, lines(10).map((_, i) => i))
      assert.deepStrictEqual(queue.stats(), {
        accepted: 10,
        stored: 10,
        deadLettered: 0,
        lost: 0,
        queued: 0,
        queuedBytes: 0,
        inFlight: 0
      })
      assert.strictEqual(dead.files.size, 0)
      assert.strictEqual(lifecycle.exitCode, 0)
      assert.strictEqual(yield* sample(metrics, "s3ingest_payloads_stored_total"), 10)
    }))

  it.effect("a drain over budget aborts in-flight uploads and dead-letters the rest under their keys", () =>
    Effect.gen(function*() {
      const store = yield* makeHangingStore
      const dead = yield* makeMemoryDeadLetter
      const { close, lifecycle, metrics, queue } = yield* buildQueue(
        {
          maxWorkers: 1,
          batchMaxItems: 2,
          batchMaxWaitMs: 0,
          uploadTimeoutMs: 60_000,
          shutdownTimeoutMs: 5_000
        },
        store.layer,
        dead.layer
      )
      queue.offerAll(lines(5), 0)
      const inFlightKey = yield* Queue.take(store.started)
      assert.deepStrictEqual(queue.stats().inFlight, 2)
      assert.deepStrictEqual(queue.stats().queued, 3)
      // Budget 5 s minus the 2 s reserve: the drain gives up at 3 s.
      yield* close(3_000)
      assert.strictEqual(yield* Deferred.await(store.aborted), inFlightKey)
      assert.isTrue(dead.files.has(inFlightKey), "the in-flight batch keeps its key")
      assert.deepStrictEqual(ids(dead.files.get(inFlightKey)!), [0, 1])
      const all = [...dead.files.values()].flatMap(ids).sort((a, b) => a - b)
      assert.deepStrictEqual(all, [0, 1, 2, 3, 4])
      for (const key of dead.files.keys()) assert.match(key, KEY)
      const stats = queue.stats()
      assert.deepStrictEqual([stats.stored, stats.deadLettered, stats.lost, stats.queued, stats.inFlight], [
        0,
        5,
        0,
        0,
        0
      ])
      assert.strictEqual(lifecycle.exitCode, 1)
      assert.strictEqual(yield* sample(metrics, "s3ingest_payloads_dead_lettered_total"), 5)
      assert.strictEqual(keyFileName(inFlightKey), inFlightKey.split("/").pop())
    }))

  it.effect("payloads whose dead-letter write fails are counted lost: exit code 2", () =>
    Effect.gen(function*() {
      const store = yield* makeHangingStore
      const { close, lifecycle, metrics, queue } = yield* buildQueue(
        { maxWorkers: 1, batchMaxWaitMs: 0, uploadTimeoutMs: 60_000, shutdownTimeoutMs: 4_000 },
        store.layer,
        FailingDeadLetter
      )
      queue.offerAll(lines(3), 0)
      yield* Queue.take(store.started)
      yield* close(2_000)
      assert.strictEqual(queue.stats().lost, 3)
      assert.strictEqual(lifecycle.exitCode, 2)
      assert.strictEqual(yield* sample(metrics, "s3ingest_payloads_lost_total"), 3)
    }))
})

describe("JobQueue failures", () => {
  it.effect("a permanent store error dead-letters the batch after one attempt", () =>
    Effect.gen(function*() {
      const store = yield* makeScriptedStore([permanent()])
      const dead = yield* makeMemoryDeadLetter
      const { close, queue } = yield* buildQueue({ maxWorkers: 1, batchMaxWaitMs: 0 }, store.layer, dead.layer)
      queue.offerAll(lines(2), 0)
      yield* close(0)
      assert.strictEqual(store.attempts.length, 1)
      assert.deepStrictEqual([...dead.files.values()].flatMap(ids), [0, 1])
      assert.strictEqual(queue.stats().deadLettered, 2)
    }))

  it.effect("a defect in one upload does not kill its worker", () =>
    Effect.gen(function*() {
      const store = yield* makeScriptedStore(["die", "ok"])
      const dead = yield* makeMemoryDeadLetter
      const { close, queue } = yield* buildQueue({ maxWorkers: 1, batchMaxWaitMs: 0 }, store.layer, dead.layer)
      queue.offerAll(lines(1), 0)
      yield* Effect.yieldNow()
      queue.offerAll(lines(1, 1), 0)
      yield* close(0)
      assert.strictEqual(store.attempts.length, 2)
      assert.deepStrictEqual([...dead.files.values()].flatMap(ids), [0])
      assert.deepStrictEqual([...store.stored.values()].flatMap(ids), [1])
      const stats = queue.stats()
      assert.deepStrictEqual([stats.accepted, stats.stored, stats.deadLettered], [2, 1, 1])
    }))
})
