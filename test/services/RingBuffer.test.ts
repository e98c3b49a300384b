import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Queue from "effect/Queue"
import { RingBuffer } from "../../src/services/RingBuffer.js"

const drain = <A>(ring: RingBuffer<A>): Array<A> => Chunk.toReadonlyArray(ring.pollUpTo(Number.POSITIVE_INFINITY)).slice()

describe("RingBuffer", () => {
  it("is first in, first out across the end of its array, and refuses past its bound", () => {
    const ring = new RingBuffer<number>(3)
    assert.isTrue(ring.offer(1))
    assert.isTrue(ring.offer(2))
    assert.strictEqual(ring.poll(undefined), 1)
    assert.isTrue(ring.offer(3))
    assert.isTrue(ring.offer(4), "wraps into the slot the first element left")
    assert.isFalse(ring.offer(5), "full at 3")
    assert.strictEqual(ring.length(), 3)
    assert.strictEqual(ring.capacity(), 3)
    assert.deepStrictEqual(drain(ring), [2, 3, 4])
    assert.strictEqual(ring.poll("none"), "none")
    assert.strictEqual(ring.length(), 0)
  })

  it("polls up to a limit in order, and offers all it has room for", () => {
    const ring = new RingBuffer<string>(4)
    assert.deepStrictEqual(Chunk.toReadonlyArray(ring.offerAll(["a", "b", "c", "d", "e", "f"])), ["e", "f"])
    assert.deepStrictEqual(Chunk.toReadonlyArray(ring.pollUpTo(3)), ["a", "b", "c"])
    assert.deepStrictEqual(Chunk.toReadonlyArray(ring.pollUpTo(0)), [])
    ring.offer("g")
    assert.deepStrictEqual(drain(ring), ["d", "g"])
  })

  it("gives and replaces the last element while it is held", () => {
    const ring = new RingBuffer<string>(3)
    assert.isUndefined(ring.last())
    assert.isFalse(ring.replaceLast("x"), "nothing to replace")
    ring.offerAll(["a", "b", "c"])
    ring.pollUpTo(2)
    ring.offer("d")
    assert.strictEqual(ring.last(), "d", "across the end of the array")
    assert.isTrue(ring.replaceLast("e"))
    assert.strictEqual(ring.length(), 2)
    assert.deepStrictEqual(drain(ring), ["c", "e"])
    assert.isUndefined(ring.last())
  })

  it("keeps no reference to an element once it has left", () => {
    const ring = new RingBuffer<object>(4)
    const elements = [{}, {}, {}, {}, {}]
    for (const element of elements.slice(0, 3)) ring.offer(element)
    ring.poll(undefined)
    ring.pollUpTo(1)
    ring.offer(elements[3]!)
    ring.offer(elements[4]!)
    // The reason the ring exists (see its module): what left must not stay reachable from it.
    const slots = (ring as unknown as { readonly slots: ReadonlyArray<object | undefined> }).slots
    assert.isFalse(slots.includes(elements[0]!))
    assert.isFalse(slots.includes(elements[1]!))
    assert.deepStrictEqual(drain(ring), elements.slice(2))
    assert.isTrue(slots.every((slot) => slot === undefined))
  })

  it.effect("backs an Effect Queue: takers wait for offers and takeUpTo takes in order", () =>
    Effect.gen(function*() {
      const queue = yield* Queue.make(new RingBuffer<number>(8), Queue.backPressureStrategy())
      const taker = yield* Effect.fork(Queue.take(queue))
      yield* Effect.yieldNow()
      assert.isTrue(queue.unsafeOffer(1))
      assert.strictEqual(yield* Fiber.join(taker), 1, "handed to the waiting taker")
      for (const n of [2, 3, 4]) queue.unsafeOffer(n)
      assert.deepStrictEqual(Chunk.toReadonlyArray(yield* Queue.takeUpTo(queue, 2)), [2, 3])
      assert.strictEqual(yield* Queue.size(queue), 1)
      assert.deepStrictEqual(Chunk.toReadonlyArray(yield* Queue.takeAll(queue)), [4])
    }))
})
