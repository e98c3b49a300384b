import { assert, describe, it } from "@effect/vitest"
import {
  addToBatch,
  batchesOf,
  emptyBatch,
  encodeBatch,
  type Job,
  makeBodyBuffers,
  payloadCount,
  splitJob
} from "../../src/domain/Batch.js"
import { parseCollection } from "../../src/domain/Collection.js"
import { makeArrival, makeSlabs, type Slabs } from "../../src/domain/Slabs.js"
import { bodyOf } from "../support/collections.js"

/** The job the queue would hold for `json`: its lines written to `slabs` (by default, slabs of its own). */
const jobOf = (json: string, acceptedAt = 0, slabs: Slabs = makeSlabs(64 * 1024, 1)): Job => {
  const body = bodyOf(json)
  const parsed = parseCollection(body, 64)
  if (parsed._tag === "Invalid") throw new Error(parsed.error.message)
  return slabs.write(makeArrival(body, parsed.collection, acceptedAt), 0)
}

const collection = (...elements: ReadonlyArray<string>) =>
  `{"version":"1","token":"t","data":[${elements.join(",")}]}`

const text = (jobs: ReadonlyArray<Job>) => encodeBatch(jobs).toString("utf8")

describe("encodeBatch", () => {
  it("writes each line once with a newline, whatever separates the elements in the body", () => {
    const job = jobOf(`{"version":"1","token":"t","data":[{"a":1},{"b":"x,y"} ,\n\t{"c":[1,2]},{"d":{}}]}`)
    assert.strictEqual(text([job]), `{"a":1}\n{"b":"x,y"}\n{"c":[1,2]}\n{"d":{}}\n`)
    assert.strictEqual(encodeBatch([job]).length, job.bytes)
    const [head, tail] = splitJob(job, 1)
    assert.strictEqual(text([tail, head]), `{"b":"x,y"}\n{"c":[1,2]}\n{"d":{}}\n{"a":1}\n`)
  })

  it("encodes jobs in the order given, whether or not they lie one after another in a slab", () => {
    const slabs = makeSlabs(1024, 1)
    const [a, b, c] = [1, 2, 3].map((id) => jobOf(collection(`{"id":${id}}`, `{"id":${id}.5}`), 0, slabs))
    assert.strictEqual(b!.start, a!.start + a!.bytes, "written one after another")
    assert.strictEqual(text([a!, b!, c!]), `{"id":1}\n{"id":1.5}\n{"id":2}\n{"id":2.5}\n{"id":3}\n{"id":3.5}\n`)
    assert.strictEqual(text([c!, a!]), `{"id":3}\n{"id":3.5}\n{"id":1}\n{"id":1.5}\n`)
    const [head, tail] = splitJob(b!, 1)
    assert.strictEqual(text([a!, head, c!, tail]), `{"id":1}\n{"id":1.5}\n{"id":2}\n{"id":3}\n{"id":3.5}\n{"id":2.5}\n`)
    const other = jobOf(collection(`{"id":4}`))
    assert.strictEqual(text([a!, other, b!]), `{"id":1}\n{"id":1.5}\n{"id":4}\n{"id":2}\n{"id":2.5}\n`)
  })
})

describe("makeBodyBuffers", () => {
  const job = (id: number, pad = 0) => jobOf(collection(`{"id":${id},"s":"${"x".repeat(pad)}"}`))
  const sameMemory = (a: Buffer, b: Buffer) => a.buffer === b.buffer

  it("encodes into a buffer that a released body hands on to the next batch", () => {
    const buffers = makeBodyBuffers(1024, 2)
    const first = buffers.encode([job(1), job(2)])
    assert.strictEqual(first.toString("utf8"), `{"id":1,"s":""}\n{"id":2,"s":""}\n`)
    assert.strictEqual(first.buffer.byteLength, 1024)
    buffers.release(first)
    assert.strictEqual(buffers.idle(), 1)
    const second = buffers.encode([job(3)])
    assert.isTrue(sameMemory(first, second), "the released memory is used again")
    assert.strictEqual(second.toString("utf8"), `{"id":3,"s":""}\n`, "only the new body's bytes, none of the old")
    assert.strictEqual(buffers.idle(), 0)
  })

  it("never gives one buffer to two bodies in use", () => {
    const buffers = makeBodyBuffers(1024, 4)
    const a = buffers.encode([job(1)])
    const b = buffers.encode([job(2)])
    assert.isFalse(sameMemory(a, b))
    buffers.release(a)
    buffers.release(a)
    assert.strictEqual(buffers.idle(), 1, "a body released twice is kept once")
    const c = buffers.encode([job(3)])
    const d = buffers.encode([job(4)])
    assert.isFalse(sameMemory(c, d))
    assert.deepStrictEqual([b, c, d].map((body) => body.toString("utf8")), [2, 3, 4].map((id) => `{"id":${id},"s":""}\n`))
  })

  it("gives a body larger than a buffer memory of its own, which it does not keep", () => {
    const buffers = makeBodyBuffers(64, 2)
    const large = buffers.encode([job(1, 100)])
    assert.strictEqual(large.toString("utf8"), `{"id":1,"s":"${"x".repeat(100)}"}\n`)
    buffers.release(large)
    assert.strictEqual(buffers.idle(), 0)
    buffers.release(encodeBatch([job(2)]))
    assert.strictEqual(buffers.idle(), 0, "memory it did not hand out is not taken")
  })

  it("keeps at most `keep` buffers", () => {
    const buffers = makeBodyBuffers(256, 2)
    const bodies = [1, 2, 3].map((id) => buffers.encode([job(id)]))
    for (const body of bodies) buffers.release(body)
    assert.strictEqual(buffers.idle(), 2)
  })
})

describe("splitting and batching", () => {
  const ten = () => jobOf(collection(...Array.from({ length: 10 }, (_, i) => `{"id":${i}}`)), 7)

  it("splitJob cuts a job in two that encode to the whole", () => {
    const job = ten()
    const [head, tail] = splitJob(job, 4)
    assert.strictEqual(head.count + tail.count, 10)
    assert.strictEqual(head.bytes + tail.bytes, job.bytes)
    assert.strictEqual(tail.acceptedAt, 7)
    assert.strictEqual(text([head, tail]), text([job]))
    assert.strictEqual(text([head]), `{"id":0}\n{"id":1}\n{"id":2}\n{"id":3}\n`)
  })

  it("addToBatch takes what fits of a job by lines and by bytes and returns the rest", () => {
    const byLines = emptyBatch()
    const rest = addToBatch(byLines, ten(), 3, 1_000)
    assert.deepStrictEqual([byLines.lines, byLines.bytes, rest?.count], [3, 27, 7])
    assert.isUndefined(addToBatch(emptyBatch(), ten(), 10, 90), "exactly full")

    const byBytes = emptyBatch()
    const left = addToBatch(byBytes, ten(), 100, 20)
    assert.deepStrictEqual([byBytes.lines, left?.count], [2, 8])
    assert.strictEqual(addToBatch(byBytes, left!, 100, 20), left, "a full batch takes nothing")
  })

  it("an empty batch takes one line larger than the byte bound", () => {
    const big = jobOf(collection(`{"s":"${"x".repeat(100)}"}`, `{"id":1}`))
    const batch = emptyBatch()
    const rest = addToBatch(batch, big, 10, 50)
    assert.strictEqual(batch.lines, 1)
    assert.strictEqual(rest?.count, 1)
  })

  it("batchesOf cuts jobs into bounded batches, in order, splitting jobs where needed", () => {
    const jobs = [ten(), jobOf(collection(`{"id":10}`, `{"id":11}`)), ten()]
    const batches = batchesOf(jobs, 4, 1_000)
    assert.deepStrictEqual(batches.map(payloadCount), [4, 4, 4, 4, 4, 2])
    assert.strictEqual(batches.map(text).join(""), text(jobs))
    for (const batch of batchesOf(jobs, 100, 40)) assert.isAtMost(encodeBatch(batch).length, 40)
  })
})
