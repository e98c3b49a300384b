/**
 * Delivery receipts at the fiber level: a collection's receipt names every object its payloads went
 * to, or gives up with 202 at ACK_TIMEOUT_MS (on the virtual clock), on a dead letter, or when a
 * drain reaches its end.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/TestClock"
import { makeReceipt, type Receipt } from "../../src/domain/Receipt.js"
import { makeArrival } from "../../src/domain/Slabs.js"
import type { Arrival } from "../../src/domain/Slabs.js"
import { buildQueue, ids, job, offer } from "../support/queue.js"
import { makeMemoryFiles } from "../support/journalFiles.js"
import { makeHangingStore, makeMemoryDeadLetter, makeMemoryStore, makeScriptedStore, permanent } from "../support/stores.js"

interface Answer {
  readonly count: number
  readonly keys: ReadonlyArray<string> | undefined
}

/** `arrival` with a receipt whose answers are collected in `answers`. */
const withReceipt = (arrival: Arrival, answers: Array<Answer>): readonly [Arrival, Receipt] => {
  const receipt = makeReceipt(arrival.count, (count, keys) => void answers.push({ count, keys }))
  return [makeArrival(arrival.body, arrival.collection, arrival.acceptedAt, receipt), receipt]
}

describe("receipts", () => {
  it.effect("name every object that holds the collection's payloads, once all are stored", () =>
    Effect.gen(function*() {
      const store = yield* makeMemoryStore
      const dead = yield* makeMemoryDeadLetter
      const { close, queue } = yield* buildQueue({ batchMaxItems: 2, batchMaxWaitMs: 10 }, store.layer, dead.layer)
      const answers: Array<Answer> = []
      const [arrival] = withReceipt(job(5, 100), answers)
      assert.strictEqual(yield* offer(queue, job(1, 0)), "admitted")
      assert.strictEqual(yield* offer(queue, arrival), "admitted")
      while (answers.length === 0) yield* TestClock.adjust(10)
      const [answer] = answers
      assert.strictEqual(answer!.count, 5)
      assert.strictEqual(answer!.keys!.length, 3, "5 payloads, 2 to an object, after one of another request")
      const held = answer!.keys!.flatMap((key) => ids(store.objects.get(key)!)).filter((id) => id >= 100)
      assert.deepStrictEqual(held.sort((a, b) => a - b), [100, 101, 102, 103, 104])
      yield* close(1_000)
    }))

  it.effect("give up with 202 at ACK_TIMEOUT_MS when the store never answers", () =>
    Effect.gen(function*() {
      const hanging = yield* makeHangingStore
      const dead = yield* makeMemoryDeadLetter
      const { close, queue } = yield* buildQueue(
        { ackTimeoutMs: 3_000, uploadTimeoutMs: 60_000, batchMaxWaitMs: 0 },
        hanging.layer,
        dead.layer
      )
      const answers: Array<Answer> = []
      assert.strictEqual(yield* offer(queue, withReceipt(job(2), answers)[0]), "admitted")
      yield* TestClock.adjust(2_999)
      assert.deepStrictEqual(answers, [])
      yield* TestClock.adjust(1)
      assert.deepStrictEqual(answers, [{ count: 2, keys: undefined }])
      yield* close(70_000)
    }))

  it.effect("give up with 202 at once when the batch is dead-lettered", () =>
    Effect.gen(function*() {
      const store = yield* makeScriptedStore([permanent()])
      const dead = yield* makeMemoryDeadLetter
      const { close, queue } = yield* buildQueue({ ackTimeoutMs: 60_000, batchMaxWaitMs: 0 }, store.layer, dead.layer)
      const answers: Array<Answer> = []
      assert.strictEqual(yield* offer(queue, withReceipt(job(3), answers)[0]), "admitted")
      while (answers.length === 0) yield* TestClock.adjust(1)
      assert.deepStrictEqual(answers, [{ count: 3, keys: undefined }])
      assert.strictEqual(dead.files.size, 1)
      yield* close(1_000)
    }))

  it.effect("are answered 202 when the drain reaches its end, and a receipt whose client left is never answered", () =>
    Effect.gen(function*() {
      const hanging = yield* makeHangingStore
      const dead = yield* makeMemoryDeadLetter
      const { close, queue } = yield* buildQueue({ ackTimeoutMs: 60_000, batchMaxWaitMs: 0 }, hanging.layer, dead.layer)
      const answers: Array<Answer> = []
      const [first] = withReceipt(job(1, 0), answers)
      const [second, gone] = withReceipt(job(1, 1), answers)
      assert.strictEqual(yield* offer(queue, first), "admitted")
      assert.strictEqual(yield* offer(queue, second), "admitted")
      gone.answer = undefined
      queue.answerReceipts()
      assert.deepStrictEqual(answers, [{ count: 1, keys: undefined }])
      yield* close(30_000)
    }))

  it.effect("with the journal, the receipt names the keys too", () =>
    Effect.gen(function*() {
      const store = yield* makeMemoryStore
      const dead = yield* makeMemoryDeadLetter
      const { close, queue } = yield* buildQueue(
        { durability: "journal", batchMaxItems: 2, batchMaxWaitMs: 10 },
        store.layer,
        dead.layer,
        makeMemoryFiles()
      )
      const answers: Array<Answer> = []
      assert.strictEqual(yield* offer(queue, withReceipt(job(3, 7), answers)[0]), "admitted")
      while (answers.length === 0) yield* TestClock.adjust(10)
      assert.deepStrictEqual(
        answers[0]!.keys!.flatMap((key) => ids(store.objects.get(key)!)).sort((a, b) => a - b),
        [7, 8, 9]
      )
      yield* close(1_000)
    }))
})
