import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import { gunzipSync } from "node:zlib"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Queue from "effect/Queue"
import * as TestClock from "effect/TestClock"
import { arrivalOf, awaitSleepers, buildQueue, ids, job, memoryQueue, offerNow, sample } from "../support/queue.js"
import {
  FailingDeadLetter,
  makeHangingStore,
  makeMemoryDeadLetter,
  makeScriptedStore,
  permanent
} from "../support/stores.js"

const KEY = /^payloads\/\d{4}\/\d{2}\/\d{2}\/\d{2}\/\d{8}T\d{9}Z-[0-9a-f]{8}-\d{8}\.ndjson$/

describe("JobQueue admission", () => {
  it.effect("is all-or-nothing at the payload bound", () =>
    Effect.gen(function*() {
      const { close, queue, store } = yield* memoryQueue({ maxQueue: 5, maxWorkers: 1 })
      // One synchronous block: no worker can take lines between the offers.
      const outcomes = yield* Effect.sync(() => [
        offerNow(queue, job(3)),
        offerNow(queue, job(3, 3)),
        offerNow(queue, job(2, 6)),
        offerNow(queue, job(1, 8))
      ])
      assert.deepStrictEqual(outcomes, ["admitted", "full", "admitted", "full"])
      assert.strictEqual(queue.stats().queued, 5)
      assert.strictEqual(queue.stats().accepted, 5)
      assert.strictEqual(offerNow(queue, job(6)), "too_large")
      yield* close(1_000)
      const stored = [...store.objects.values()].flatMap(ids).sort((a, b) => a - b)
      assert.deepStrictEqual(stored, [0, 1, 2, 6, 7])
    }))

  it.effect("is all-or-nothing at the byte bound", () =>
    Effect.gen(function*() {
      const size = job(1).bytes
      const { close, queue, store } = yield* memoryQueue({ maxQueueBytes: size * 4, maxWorkers: 1 })
      const outcomes = yield* Effect.sync(() => [
        offerNow(queue, job(3)),
        offerNow(queue, job(2, 3)),
        offerNow(queue, job(1, 5))
      ])
      assert.deepStrictEqual(outcomes, ["admitted", "full", "admitted"])
      assert.strictEqual(queue.stats().queuedBytes, size * 4)
      yield* close(1_000)
      assert.deepStrictEqual([...store.objects.values()].flatMap(ids).sort(), [0, 1, 2, 5])
    }))

  it.effect("queues requests accepted in the same millisecond together, in order, counted per payload", () =>
    Effect.gen(function*() {
      const { close, queue, store } = yield* memoryQueue({ maxQueue: 8, maxWorkers: 1, batchMaxItems: 4 })
      const outcomes = yield* Effect.sync(() => [
        offerNow(queue, job(2, 0, 5)),
        offerNow(queue, job(1, 2, 5)),
        offerNow(queue, job(6, 100, 5)), // refused whole: nothing of it is appended
        offerNow(queue, job(3, 3, 6)),
        offerNow(queue, job(1, 6, 6))
      ])
      assert.deepStrictEqual(outcomes, ["admitted", "admitted", "full", "admitted", "admitted"])
      assert.deepStrictEqual([queue.stats().queued, queue.stats().accepted], [7, 7])
      yield* close(1_000)
      const objects = [...store.objects.values()].map(ids)
      assert.deepStrictEqual(objects.flat(), [0, 1, 2, 3, 4, 5, 6], "in the order admitted, split at the bound")
      assert.isTrue(objects.every((object) => object.length <= 4))
      assert.deepStrictEqual([queue.stats().stored, queue.stats().queued], [7, 0])
    }))

  it.effect("reports accepted payloads to Prometheus at scrape time, counting each once", () =>
    Effect.gen(function*() {
      const { close, metrics, queue } = yield* memoryQueue({ maxQueue: 10, maxWorkers: 1 })
      const accepted = (text: string) => Number(/^s3ingest_payloads_accepted_total (\d+)$/m.exec(text)?.[1])
      assert.strictEqual(accepted(yield* metrics.render), 0)
      offerNow(queue, job(3))
      offerNow(queue, job(20, 3)) // refused: not counted
      offerNow(queue, job(2, 23))
      assert.strictEqual(accepted(yield* metrics.render), 5)
      assert.strictEqual(accepted(yield* metrics.render), 5, "a second scrape adds nothing")
      offerNow(queue, job(1, 25))
      assert.strictEqual(accepted(yield* metrics.render), 6)
      yield* close(1_000)
    }))

  it.effect("refuses once intake is closed", () =>
    Effect.gen(function*() {
      const { close, queue, shutdown } = yield* memoryQueue({})
      yield* shutdown.closeIntake
      assert.strictEqual(offerNow(queue, job(1)), "closed")
      assert.strictEqual(queue.stats().accepted, 0)
      yield* close(0)
    }))
})

describe("JobQueue batching", () => {
  it.effect("closes a batch on items without waiting, and on the wait after its first line", () =>
    Effect.gen(function*() {
      const { close, queue, store } = yield* memoryQueue({ maxWorkers: 1, batchMaxItems: 3, batchMaxWaitMs: 200 })
      offerNow(queue, job(7))
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
      const { close, queue, store } = yield* memoryQueue({ maxWorkers: 4, batchMaxWaitMs: 200 })
      offerNow(queue, job(2))
      yield* awaitSleepers(1)
      yield* TestClock.adjust("100 millis")
      offerNow(queue, job(3, 2))
      yield* TestClock.adjust("100 millis")
      const key = yield* Queue.take(store.puts)
      assert.deepStrictEqual(ids(store.objects.get(key)!), [0, 1, 2, 3, 4])
      assert.strictEqual(store.objects.size, 1)
      yield* close(0)
    }))

  it.effect("keeps each batch's own wait when the batch before it closed early", () =>
    Effect.gen(function*() {
      const { close, queue, store } = yield* memoryQueue({ maxWorkers: 1, batchMaxItems: 3, batchMaxWaitMs: 200 })
      // The first batch opens at 0 and is due at 200, but fills at 50.
      offerNow(queue, job(1))
      yield* awaitSleepers(1)
      yield* TestClock.adjust("50 millis")
      offerNow(queue, job(2, 1))
      assert.deepStrictEqual(ids(store.objects.get(yield* Queue.take(store.puts))!), [0, 1, 2])
      // The second opens at 60: at 200 the deadline wakes for a batch that has closed, and
      // the second's own wait ends at 260, not earlier.
      yield* TestClock.adjust("10 millis")
      offerNow(queue, job(1, 3))
      yield* TestClock.adjust("199 millis")
      assert.strictEqual(yield* Queue.size(store.puts), 0)
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(ids(store.objects.get(yield* Queue.take(store.puts))!), [3])
      yield* close(0)
    }))

  it.effect("closes a batch on bytes and carries the overflowing line to the next", () =>
    Effect.gen(function*() {
      const size = job(1).bytes
      const { close, queue, store } = yield* memoryQueue({ maxWorkers: 1, batchMaxBytes: size * 2, batchMaxWaitMs: 200 })
      offerNow(queue, job(5))
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

describe("JobQueue jobs", () => {
  it.effect("a request's payloads split across batches keep their order, with several workers", () =>
    Effect.gen(function*() {
      const { close, queue, store } = yield* memoryQueue({ maxWorkers: 3, batchMaxItems: 4, batchMaxWaitMs: 10_000 })
      yield* Effect.sync(() => [offerNow(queue, job(3)), offerNow(queue, job(6, 3)), offerNow(queue, job(2, 9))])
      yield* close(0)
      // Keys sort by their sequence number: the objects in the order they were collected.
      const objects = [...store.objects.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, body]) => ids(body))
      assert.deepStrictEqual(objects, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]])
      assert.strictEqual(queue.stats().stored, 11)
    }))

  it.effect("counts a job's lines as queued until a batch takes them", () =>
    Effect.gen(function*() {
      const store = yield* makeHangingStore
      const dead = yield* makeMemoryDeadLetter
      const { close, queue } = yield* buildQueue(
        { maxWorkers: 1, batchMaxItems: 4, batchMaxWaitMs: 0, uploadTimeoutMs: 60_000, shutdownTimeoutMs: 2_000 },
        store.layer,
        dead.layer
      )
      offerNow(queue, job(10))
      yield* Queue.take(store.started)
      const { inFlight, queued, queuedBytes } = queue.stats()
      assert.deepStrictEqual([inFlight, queued], [4, 6])
      assert.strictEqual(queuedBytes, job(6, 4).bytes)
      yield* close(1_000)
      const deadLettered = [...dead.files.values()].flatMap(ids).sort((a, b) => a - b)
      assert.deepStrictEqual(deadLettered, Array.from({ length: 10 }, (_, i) => i))
    }))
})

describe("JobQueue shutdown", () => {
  it.effect("drains on scope close: everything queued is uploaded, exit code 0", () =>
    Effect.gen(function*() {
      const { close, dead, exitCode, metrics, queue, store } = yield* memoryQueue({
        maxWorkers: 2,
        batchMaxItems: 3,
        batchMaxWaitMs: 10_000
      })
      offerNow(queue, job(10))
      // No clock movement: closing intake lets open batches go without their wait.
      yield* close(0)
      const stored = [...store.objects.values()].flatMap(ids).sort((a, b) => a - b)
      assert.deepStrictEqual(stored, Array.from({ length: 10 }, (_, i) => i))
      assert.deepStrictEqual(queue.stats(), {
        accepted: 10,
        recovered: 0,
        stored: 10,
        deadLettered: 0,
        lost: 0,
        queued: 0,
        queuedBytes: 0,
        inFlight: 0
      })
      assert.strictEqual(dead.files.size, 0)
      assert.strictEqual(yield* exitCode, 0)
      assert.strictEqual(yield* sample(metrics, "s3ingest_payloads_stored_total"), 10)
    }))

  it.effect("a drain over budget aborts in-flight uploads and dead-letters the rest under their keys", () =>
    Effect.gen(function*() {
      const store = yield* makeHangingStore
      const dead = yield* makeMemoryDeadLetter
      const { close, exitCode, metrics, queue } = yield* buildQueue(
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
      offerNow(queue, job(5))
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
      assert.strictEqual(yield* exitCode, 1)
      assert.strictEqual(yield* sample(metrics, "s3ingest_payloads_dead_lettered_total"), 5)
    }))

  it.effect("payloads whose dead-letter write fails are counted lost: exit code 2", () =>
    Effect.gen(function*() {
      const store = yield* makeHangingStore
      const { close, exitCode, metrics, queue } = yield* buildQueue(
        { maxWorkers: 1, batchMaxWaitMs: 0, uploadTimeoutMs: 60_000, shutdownTimeoutMs: 4_000 },
        store.layer,
        FailingDeadLetter
      )
      offerNow(queue, job(3))
      yield* Queue.take(store.started)
      yield* close(2_000)
      assert.strictEqual(queue.stats().lost, 3)
      assert.strictEqual(yield* exitCode, 2)
      assert.strictEqual(yield* sample(metrics, "s3ingest_payloads_lost_total"), 3)
    }))
})

describe("JobQueue failures", () => {
  it.effect("a permanent store error dead-letters the batch after one attempt", () =>
    Effect.gen(function*() {
      const store = yield* makeScriptedStore([permanent()])
      const dead = yield* makeMemoryDeadLetter
      const { close, queue } = yield* buildQueue({ maxWorkers: 1, batchMaxWaitMs: 0 }, store.layer, dead.layer)
      offerNow(queue, job(2))
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
      offerNow(queue, job(1))
      yield* Effect.yieldNow()
      offerNow(queue, job(1, 1))
      yield* close(0)
      assert.strictEqual(store.attempts.length, 2)
      assert.deepStrictEqual([...dead.files.values()].flatMap(ids), [0])
      assert.deepStrictEqual([...store.stored.values()].flatMap(ids), [1])
      const stats = queue.stats()
      assert.deepStrictEqual([stats.accepted, stats.stored, stats.deadLettered], [2, 1, 1])
    }))
})

describe("JobQueue objects", () => {
  it.effect("gzips each object as one member under a .ndjson.gz key, and counts its raw and stored bytes", () =>
    Effect.gen(function*() {
      const { close, metrics, queue, store } = yield* memoryQueue({
        objectCompression: "gzip",
        objectCompressionLevel: 3,
        maxWorkers: 1,
        batchMaxWaitMs: 0
      })
      assert.strictEqual(offerNow(queue, job(50)), "admitted")
      yield* close(0)
      const [key, body] = [...store.bytes.entries()][0]!
      assert.match(key, /\.ndjson\.gz$/)
      assert.deepStrictEqual(ids(gunzipSync(body).toString("utf8")), Array.from({ length: 50 }, (_, i) => i))
      // One gzip member: the stream ends where the member's trailer does.
      assert.deepStrictEqual([body[0], body[1]], [0x1f, 0x8b])
      assert.strictEqual(gunzipSync(body).length, job(50).bytes)
      assert.strictEqual(yield* sample(metrics, "s3ingest_object_bytes_total", { stage: "raw" }), job(50).bytes)
      assert.strictEqual(yield* sample(metrics, "s3ingest_object_bytes_total", { stage: "stored" }), body.length)
      assert.isBelow(body.length, job(50).bytes)
    }))

  it.effect.prop(
    "gzip round-trips the exact lines of any payloads, in order",
    [FastCheck.array(FastCheck.array(FastCheck.jsonValue(), { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 6 })],
    ([collections]) =>
      Effect.gen(function*() {
        const { close, queue, store } = yield* memoryQueue({ objectCompression: "gzip", maxWorkers: 2, batchMaxItems: 5 })
        const sent: Array<string> = []
        for (const values of collections) {
          const data = values.map((value, i) => ({ n: sent.length + i, value }))
          const arrival = arrivalOf(JSON.stringify({ version: "1", token: "t", data }))
          if (offerNow(queue, arrival) === "admitted") sent.push(...data.map((payload) => JSON.stringify(payload)))
        }
        yield* close(0)
        const lines = [...store.bytes.entries()]
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .flatMap(([, body]) => gunzipSync(body).toString("utf8").split("\n").filter((line) => line !== ""))
        assert.deepStrictEqual(lines, sent)
      }),
    { fastCheck: { numRuns: 25 } }
  )
})
