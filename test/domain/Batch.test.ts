import { assert, describe, it } from "@effect/vitest"
import { encodeBatch, jobBytes, lineBytesOf } from "../../src/domain/Batch.js"
import { parseCollection } from "../../src/domain/Collection.js"

const linesOf = (json: string) => {
  const body = Buffer.from(json, "utf8")
  const text = body.toString("utf8")
  const parsed = parseCollection(text, 64)
  if (parsed._tag === "Invalid") throw new Error(parsed.error.message)
  return { body, lines: lineBytesOf(body, text, parsed.collection.lines, parsed.collection.spans) }
}

describe("line bytes", () => {
  it("are views of an ASCII body: no copy", () => {
    const { body, lines } = linesOf(`{"version":"1","token":"t","data":[{"id":1, "x":"a"},{"id":2}]}`)
    assert.deepStrictEqual(lines.map((l) => Buffer.from(l).toString()), [`{"id":1, "x":"a"}`, `{"id":2}`])
    for (const line of lines) assert.strictEqual(line.buffer, body.buffer)
  })

  it("are the UTF-8 encoding of each line when the body is not ASCII", () => {
    const { lines } = linesOf(`{"version":"1","token":"t","data":[{"s":"é😀"},{"id":2}]}`)
    assert.deepStrictEqual(lines.map((l) => Buffer.from(l).toString("utf8")), [`{"s":"é😀"}`, `{"id":2}`])
    assert.strictEqual(lines[0]!.length, Buffer.byteLength(`{"s":"é😀"}`))
  })

  it("of an element written over several lines hold it on one line", () => {
    const { lines } = linesOf(`{"version":"1","token":"t","data":[{"id":1,\n "n": -0.0}]}`)
    assert.strictEqual(Buffer.from(lines[0]!).toString(), `{"id":1,  "n": -0.0}`)
  })
})

describe("encodeBatch", () => {
  it("writes one line per job, each ending in a newline, and sizes match jobBytes", () => {
    const jobs = [Buffer.from(`{"a":1}`), Buffer.from(`{"s":"é"}`)].map((line) => ({ line, acceptedAt: 0 }))
    const body = encodeBatch(jobs)
    assert.strictEqual(Buffer.from(body).toString("utf8"), `{"a":1}\n{"s":"é"}\n`)
    assert.strictEqual(body.length, jobs.reduce((n, j) => n + jobBytes(j), 0))
  })
})
