import { assert, describe, it } from "@effect/vitest"
import {
  addToBatch,
  batchesOf,
  emptyBatch,
  encodeBatch,
  type Job,
  makeBodyBuffers,
  makeJob,
  payloadCount,
  splitJob
} from "../../src/domain/Batch.js"
import { parseCollection } from "../../src/domain/Collection.js"
import { bodyOf } from "../support/collections.js"

const jobOf = (json: string, acceptedAt = 0): Job => {
  const body = bodyOf(json)
  const parsed = parseCollection(body, 64)
  if (parsed._tag === "Invalid") throw new Error(parsed.error.message)
  return makeJob(body, parsed.collection, acceptedAt)
}

const collection = (...elements: ReadonlyArray<string>) =>
  `{"version":"1","token":"t","data":[${elements.join(",")}]}`

const text = (jobs: ReadonlyArray<Job>) => encodeBatch(jobs).toString("utf8")

describe("makeJob", () => {
  it("holds the body itself and sizes the job as its lines plus a newline each", () => {
    const json = collection(`{"id":1, "x":"a"}`, `{"s":"é😀"}`)
    const job = jobOf(json)
    assert.strictEqual(job.count, 2)
    assert.strictEqual(job.bytes, Buffer.byteLength(`{"id":1, "x":"a"}\n{"s":"é😀"}\n`))
    assert.strictEqual(job.body.toString("utf8"), json, "a one-line body is left as sent")
    assert.strictEqual(text([job]), `{"id":1, "x":"a"}\n{"s":"é😀"}\n`)
  })

  it("blanks the line breaks of an element written over several lines, in the body itself", () => {
    const json = `{"version":"1","token":"t",\n"data":[\n{"id":1,\r\n "n": -0.0,\n"s":"a\\nb"}\n]}`
    const job = jobOf(json)
    assert.strictEqual(text([job]), `{"id":1,   "n": -0.0, "s":"a\\nb"}\n`)
    // Only inside the element: the body's other line breaks are left alone.
    assert.strictEqual(job.body.toString("utf8").slice(0, 28), `{"version":"1","token":"t",\n`)
  })
})

describe("encodeBatch", () => {
  it("writes each line once with a newline, whatever separates the elements in the body", () => {
    const job = jobOf(`{"version":"1","token":"t","data":[{"a":1},{"b":"x,y"} ,\n\t{"c":[1,2]},{"d":{}}]}`)
    assert.strictEqual(text([job]), `{"a":1}\n{"b":"x,y"}\n{"c":[1,2]}\n{"d":{}}\n`)
    assert.strictEqual(encodeBatch([job]).length, job.bytes)
    const [head, tail] = splitJob(job, 1)
    assert.strictEqual(text([tail, head]), `{"b":"x,y"}\n{"c":[1,2]}\n{"d":{}}\n{"a":1}\n`)
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

describe("a job's memory", () => {
  it("is its body when the lines are most of it, and their own copy when they are not", () => {
    const lines = Array.from({ length: 4 }, (_, i) => `{"id":${i},"s":"${"x".repeat(200)}"}`)
    const lean = jobOf(collection(...lines))
    assert.strictEqual(lean.body.toString("utf8"), collection(...lines), "kept as sent")

    const padding = "p".repeat(64 * 1024)
    const padded = jobOf(`{"version":"1","token":"t","note":"${padding}","data":[${lines.join(", ")}]}`, 5)
    assert.isAtMost(padded.body.buffer.byteLength, 2 * padded.bytes + 256)
    assert.strictEqual(padded.body.length, padded.bytes)
    assert.strictEqual(text([padded]), lines.map((l) => `${l}\n`).join(""))
    assert.strictEqual(padded.acceptedAt, 5)
    const [head, tail] = splitJob(padded, 3)
    assert.strictEqual(text([tail, head]), [lines[3], lines[0], lines[1], lines[2]].map((l) => `${l}\n`).join(""))
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
