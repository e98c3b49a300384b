import { assert, describe, it } from "@effect/vitest"
import { RingBuffer } from "../../../src/services/buffer/RingBuffer.js"

const drain = <A>(ring: RingBuffer<A>): Array<A> => {
  const out: Array<A> = []
  for (let element = ring.shift(); element !== undefined; element = ring.shift()) out.push(element)
  return out
}

describe("RingBuffer", () => {
  it("is first in, first out across the end of its array, and refuses past its bound", () => {
    const ring = new RingBuffer<number>(3)
    assert.isTrue(ring.push(1))
    assert.isTrue(ring.push(2))
    assert.strictEqual(ring.shift(), 1)
    assert.isTrue(ring.push(3))
    assert.isTrue(ring.push(4), "wraps into the slot the first element left")
    assert.isFalse(ring.push(5), "full at 3")
    assert.strictEqual(ring.length, 3)
    assert.deepStrictEqual(drain(ring), [2, 3, 4])
    assert.isUndefined(ring.shift())
    assert.strictEqual(ring.length, 0)
  })

  it("gives and replaces the first and the last element while they are held", () => {
    const ring = new RingBuffer<string>(3)
    assert.isUndefined(ring.first())
    assert.isUndefined(ring.last())
    assert.isFalse(ring.replaceFirst("x"), "nothing to replace")
    assert.isFalse(ring.replaceLast("x"), "nothing to replace")
    for (const s of ["a", "b", "c"]) ring.push(s)
    ring.shift()
    ring.shift()
    ring.push("d")
    assert.strictEqual(ring.first(), "c")
    assert.strictEqual(ring.last(), "d", "across the end of the array")
    assert.isTrue(ring.replaceLast("e"))
    assert.isTrue(ring.replaceFirst("b"))
    assert.strictEqual(ring.length, 2)
    assert.deepStrictEqual(drain(ring), ["b", "e"])
  })

  it("keeps no reference to an element once it has left", () => {
    const ring = new RingBuffer<object>(4)
    const elements = [{}, {}, {}, {}, {}]
    for (const element of elements.slice(0, 3)) ring.push(element)
    ring.shift()
    ring.shift()
    ring.push(elements[3]!)
    ring.push(elements[4]!)
    // The reason the ring exists (see its module): what left must not stay reachable from it.
    const slots = (ring as unknown as { readonly slots: ReadonlyArray<object | undefined> }).slots
    assert.isFalse(slots.includes(elements[0]!))
    assert.isFalse(slots.includes(elements[1]!))
    assert.deepStrictEqual(drain(ring), elements.slice(2))
    assert.isTrue(slots.every((slot) => slot === undefined))
  })
})
