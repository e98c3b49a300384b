import { assert, describe, it } from "@effect/vitest"
import { type Job, splitJob } from "../../src/domain/Batch.js"
import { parseCollection } from "../../src/domain/Collection.js"
import { type Arrival, makeArrival, makeSlabs } from "../../src/domain/Slabs.js"
import { bodyOf } from "../support/collections.js"

const arrivalOf = (json: string, acceptedAt = 0): Arrival => {
  const body = bodyOf(json)
  const parsed = parseCollection(body, 64)
  if (parsed._tag === "Invalid") throw new Error(parsed.error.message)
  return makeArrival(body, parsed.collection, acceptedAt)
}

const collection = (...elements: ReadonlyArray<string>) =>
  `{"version":"1","token":"t","data":[${elements.join(",")}]}`

/** A collection of one payload `{"s":"xx…"}` whose line, with its "\n", is `bytes` bytes. */
const sized = (bytes: number) => arrivalOf(collection(`{"s":"${"x".repeat(bytes - 9)}"}`))

const lines = (job: Job) => job.slab.memory.toString("utf8", job.start, job.start + job.bytes)

describe("makeArrival", () => {
  it("counts the payloads and sizes them as their lines plus a newline each", () => {
    const arrival = arrivalOf(collection(`{"id":1, "x":"a"}`, `{"s":"é😀"}`), 7)
    assert.strictEqual(arrival.count, 2)
    assert.strictEqual(arrival.bytes, Buffer.byteLength(`{"id":1, "x":"a"}\n{"s":"é😀"}\n`))
    assert.strictEqual(arrival.acceptedAt, 7)
    assert.strictEqual(sized(40).bytes, 40)
  })
})

describe("makeSlabs", () => {
  it("copies the lines as NDJSON and leaves the request body as it was sent", () => {
    const json = `{"version":"1","token":"t","data":[{"a":1},{"b":"x,y"} ,\n\t{"c":[1,2]},{"d":{}}]}`
    const arrival = arrivalOf(json, 5)
    const job = makeSlabs(1024, 1).write(arrival, 0)
    assert.strictEqual(lines(job), `{"a":1}\n{"b":"x,y"}\n{"c":[1,2]}\n{"d":{}}\n`)
    assert.deepStrictEqual([job.count, job.bytes, job.acceptedAt], [4, arrival.bytes, 5])
    assert.strictEqual(arrival.body.toString("utf8"), json)
  })

  it("blanks the line breaks of an element written over several lines, in its copy only", () => {
    const json = `{"version":"1","token":"t",\n"data":[\n{"id":1,\r\n "n": -0.0,\n"s":"a\\nb"},{"id":2}\n]}`
    const arrival = arrivalOf(json)
    assert.strictEqual(lines(makeSlabs(1024, 1).write(arrival, 0)), `{"id":1,   "n": -0.0, "s":"a\\nb"}\n{"id":2}\n`)
    assert.strictEqual(arrival.body.toString("utf8"), json)
  })

  it("holds the lines and nothing else of the body", () => {
    const line = `{"id":1,"s":"${"x".repeat(200)}"}`
    const padded = arrivalOf(`{"version":"1","token":"t","note":"${"p".repeat(64 * 1024)}","data":[${line}, ${line}]}`)
    const job = makeSlabs(1024, 1).write(padded, 0)
    assert.strictEqual(job.slab.used, job.bytes)
    assert.strictEqual(job.slab.memory.length, 1024)
    assert.strictEqual(lines(job), `${line}\n${line}\n`)
  })

  it("writes jobs one after another until a slab is full, then starts the next", () => {
    const slabs = makeSlabs(100, 2)
    const [a, b, c] = [40, 40, 40].map((bytes) => slabs.write(sized(bytes), 0))
    assert.strictEqual(a!.slab, b!.slab)
    assert.deepStrictEqual([a!.start, b!.start], [0, 40])
    assert.notStrictEqual(c!.slab, a!.slab, "no room for 40 more bytes in 100")
    assert.strictEqual(c!.start, 0)
    assert.deepStrictEqual([lines(a!), lines(c!)], [`{"s":"${"x".repeat(31)}"}\n`, `{"s":"${"x".repeat(31)}"}\n`])
  })

  it("gives lines larger than a slab memory of their own, and never keeps it", () => {
    const slabs = makeSlabs(100, 2)
    const small = slabs.write(sized(30), 0)
    const large = slabs.write(sized(150), 0)
    assert.strictEqual(large.slab.memory.length, 150)
    assert.strictEqual(lines(large), `{"s":"${"x".repeat(141)}"}\n`)
    assert.strictEqual(slabs.write(sized(30), 0).slab, small.slab, "the current slab stays current")
    slabs.release([large])
    assert.strictEqual(slabs.idle(), 0)
  })

  it("writes the current slab from its start again once nothing in it is pending", () => {
    const slabs = makeSlabs(100, 2)
    const first = slabs.write(sized(40), 0)
    const second = slabs.write(sized(40), 0)
    slabs.release([first])
    const third = slabs.write(sized(20), 0)
    assert.strictEqual(third.start, 80, "the second job's lines are still pending")
    slabs.release([second, third])
    const fourth = slabs.write(sized(60), 0)
    assert.strictEqual(fourth.slab, first.slab)
    assert.strictEqual(fourth.start, 0)
    assert.strictEqual(slabs.idle(), 0)
  })

  it("reuses a slab once every job written to it is released, the parts of a split job included", () => {
    const slabs = makeSlabs(100, 2)
    const job = slabs.write(arrivalOf(collection(`{"id":1}`, `{"id":2}`, `{"id":3}`)), 0)
    const next = slabs.write(sized(90), 0)
    assert.notStrictEqual(next.slab, job.slab)
    const [head, rest] = splitJob(job, 1)
    slabs.release([head])
    assert.strictEqual(slabs.idle(), 0, "part of the job is still queued")
    slabs.release([rest])
    assert.strictEqual(slabs.idle(), 1)
    slabs.release([next])
    const reused = slabs.write(sized(95), 0)
    assert.strictEqual(reused.slab, next.slab, "the emptied current slab, from its start")
    assert.strictEqual(reused.start, 0)
    assert.strictEqual(slabs.write(sized(50), 0).slab, job.slab, "then the one kept")
  })

  it("appends lines accepted in the same millisecond to the job written last, while they fit", () => {
    const slabs = makeSlabs(100, 2)
    const tail = slabs.write(arrivalOf(collection(`{"id":1}`), 5), 0)
    const appended = slabs.append(tail, arrivalOf(collection(`{"id":2}`, `{"id":3}`), 5))
    assert.isDefined(appended)
    assert.deepStrictEqual([appended!.start, appended!.count, appended!.bytes, appended!.acceptedAt], [0, 3, 27, 5])
    assert.strictEqual(lines(appended!), `{"id":1}\n{"id":2}\n{"id":3}\n`)
    assert.strictEqual(appended!.slab.pending, 27)

    assert.isUndefined(slabs.append(appended!, arrivalOf(collection(`{"id":4}`), 6)), "a later millisecond")
    assert.isUndefined(slabs.append(tail, arrivalOf(collection(`{"id":4}`), 5)), "not the last lines written")
    assert.isUndefined(slabs.append(appended!, sized(80)), "no room after it")
    const next = slabs.write(sized(80), 0)
    assert.isUndefined(slabs.append(appended!, arrivalOf(collection(`{"id":4}`), 5)), "its slab is no longer current")
    assert.strictEqual(appended!.slab.used, 27, "nothing was written by a refused append")
    assert.notStrictEqual(next.slab, appended!.slab)
  })

  it("keeps at most `keep` empty slabs", () => {
    const slabs = makeSlabs(100, 1)
    const jobs = [90, 90, 90, 90].map((bytes) => slabs.write(sized(bytes), 0))
    assert.strictEqual(new Set(jobs.map((job) => job.slab)).size, 4)
    slabs.release(jobs.slice(0, 3))
    assert.strictEqual(slabs.idle(), 1)
  })
})
