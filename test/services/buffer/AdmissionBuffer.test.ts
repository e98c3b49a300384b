/**
 * The admission buffer on its own: bounds, reserve → commit → release, batches taken in order,
 * the wake-up and idle signals, and the ledger invariant under any sequence of operations.
 */
import { assert, describe, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import { emptyBatch, encodeBatch, type Job } from "../../../src/domain/Batch.js"
import { checkLedger, makeAdmissionBuffer } from "../../../src/services/buffer/AdmissionBuffer.js"
import { ids, job } from "../../support/queue.js"

const bounds = { maxQueue: 10, maxQueueBytes: 1_000_000, shedHighWater: 0.5 }

const idsOf = (jobs: ReadonlyArray<Job>) => ids(encodeBatch(jobs).toString("utf8"))

describe("AdmissionBuffer: admission", () => {
  it("is all-or-nothing at the payload bound, counting reserved lines against it", () => {
    const buffer = makeAdmissionBuffer(bounds)
    const held = buffer.reserve(job(4), false)
    assert.notStrictEqual(typeof held, "string")
    assert.strictEqual(buffer.admit(job(6, 4), false), "admitted")
    assert.strictEqual(buffer.admit(job(1, 10), false), "full", "4 reserved + 6 queued")
    assert.strictEqual(buffer.admit(job(11), false), "too_large")
    assert.deepStrictEqual(buffer.ledger(), {
      accepted: 6,
      stored: 0,
      deadLettered: 0,
      lost: 0,
      queued: 6,
      queuedBytes: job(6, 4).bytes,
      inFlight: 0
    })
  })

  it("is all-or-nothing at the byte bound", () => {
    const size = job(1).bytes
    const buffer = makeAdmissionBuffer({ ...bounds, maxQueueBytes: size * 3 })
    assert.strictEqual(buffer.admit(job(2), false), "admitted")
    assert.strictEqual(buffer.admit(job(2, 2), false), "full")
    assert.strictEqual(buffer.admit(job(1, 4), false), "admitted")
    assert.strictEqual(buffer.admit(job(4), false), "too_large")
  })

  it("sheds above the high-water mark while the store is down, and only then", () => {
    const buffer = makeAdmissionBuffer(bounds)
    assert.strictEqual(buffer.admit(job(5), true), "admitted", "5 of 10 is at the mark, not above")
    assert.strictEqual(buffer.admit(job(1, 5), true), "shedding")
    assert.strictEqual(buffer.admit(job(1, 5), false), "admitted")
  })

  it("reserved lines are not takeable, nor accepted, until committed; released ones never are", () => {
    const buffer = makeAdmissionBuffer(bounds)
    const first = buffer.reserve(job(2), false)
    const second = buffer.reserve(job(3, 2), false)
    if (typeof first === "string" || typeof second === "string") return assert.fail("refused")
    const batch = emptyBatch()
    assert.isFalse(buffer.fill(batch, 100, 1_000_000))
    assert.strictEqual(batch.lines, 0, "nothing committed yet")
    assert.strictEqual(buffer.ledger().accepted, 0)
    buffer.release(first)
    buffer.commit(second)
    buffer.fill(batch, 100, 1_000_000)
    assert.deepStrictEqual(idsOf(batch.jobs), [2, 3, 4])
    assert.deepStrictEqual([buffer.ledger().accepted, buffer.ledger().inFlight], [3, 3])
    assert.strictEqual(buffer.admit(job(10, 10), false), "admitted", "lines in flight do not count against the bound")
    assert.strictEqual(buffer.admit(job(1, 20), false), "full")
    assert.isUndefined(checkLedger(buffer.ledger()))
  })

  it("appends a collection accepted in the same millisecond to the job before it", () => {
    const buffer = makeAdmissionBuffer(bounds)
    buffer.admit(job(2, 0, 7), false)
    buffer.admit(job(1, 2, 7), false)
    buffer.admit(job(1, 3, 8), false)
    const batch = emptyBatch()
    buffer.fill(batch, 100, 1_000_000)
    assert.deepStrictEqual(batch.jobs.map((j) => [j.count, j.acceptedAt]), [[3, 7], [1, 8]])
    assert.deepStrictEqual(idsOf(batch.jobs), [0, 1, 2, 3])
  })
})

describe("AdmissionBuffer: batches", () => {
  it("fills in order, splits a job at the bound, and keeps its rest first in line", () => {
    const buffer = makeAdmissionBuffer(bounds)
    buffer.admit(job(3, 0, 1), false)
    buffer.admit(job(3, 3, 2), false)
    const first = emptyBatch()
    assert.isTrue(buffer.fill(first, 4, 1_000_000), "full at 4 lines")
    assert.deepStrictEqual(idsOf(first.jobs), [0, 1, 2, 3])
    assert.deepStrictEqual([buffer.ledger().queued, buffer.ledger().inFlight], [2, 4])
    const second = emptyBatch()
    assert.isFalse(buffer.fill(second, 4, 1_000_000), "room left, nothing waiting")
    assert.deepStrictEqual(idsOf(second.jobs), [4, 5])
  })

  it("reports a batch full when the next line does not fit its bytes", () => {
    const size = job(1).bytes
    const buffer = makeAdmissionBuffer(bounds)
    buffer.admit(job(1, 0, 1), false)
    buffer.admit(job(1, 1, 2), false)
    const batch = emptyBatch()
    assert.isTrue(buffer.fill(batch, 100, size + 1))
    assert.strictEqual(batch.lines, 1)
    assert.strictEqual(buffer.ledger().queued, 1)
  })

  it("takes everything left, in order, at shutdown", () => {
    const buffer = makeAdmissionBuffer(bounds)
    buffer.admit(job(2, 0, 1), false)
    buffer.admit(job(2, 2, 2), false)
    buffer.fill(emptyBatch(), 1, 1_000_000)
    assert.deepStrictEqual(idsOf(buffer.takeAll()), [1, 2, 3])
    assert.deepStrictEqual([buffer.ledger().queued, buffer.ledger().inFlight], [0, 4])
  })
})

describe("AdmissionBuffer: signals", () => {
  it("wakes once at the threshold, or at once when it is already reached", () => {
    const buffer = makeAdmissionBuffer(bounds)
    let woken = 0
    buffer.wakeAt(3, Number.POSITIVE_INFINITY, () => woken++)
    buffer.admit(job(2, 0, 1), false)
    assert.strictEqual(woken, 0)
    buffer.admit(job(1, 2, 2), false)
    assert.strictEqual(woken, 1)
    buffer.admit(job(1, 3, 3), false)
    assert.strictEqual(woken, 1, "once")
    buffer.wakeAt(1, 1, () => woken++)
    assert.strictEqual(woken, 2, "already there")
  })

  it("says when nothing is queued or in flight", () => {
    const buffer = makeAdmissionBuffer(bounds)
    let idle = 0
    buffer.whenIdle(() => idle++)
    assert.strictEqual(idle, 1, "idle from the start")
    buffer.admit(job(2), false)
    buffer.whenIdle(() => idle++)
    const batch = emptyBatch()
    buffer.fill(batch, 100, 1_000_000)
    buffer.settle(1, "stored")
    assert.strictEqual(idle, 1)
    buffer.settle(1, "deadLettered")
    assert.strictEqual(idle, 2)
  })
})

type Step =
  | { readonly op: "admit" | "reserve"; readonly count: number; readonly storeDown: boolean }
  | { readonly op: "commit" | "release" }
  | { readonly op: "fill"; readonly maxLines: number }
  | { readonly op: "settle"; readonly outcome: "stored" | "deadLettered" | "lost" }
  | { readonly op: "takeAll" }

const step: FastCheck.Arbitrary<Step> = FastCheck.oneof(
  FastCheck.record({
    op: FastCheck.constantFrom("admit" as const, "reserve" as const),
    count: FastCheck.integer({ min: 1, max: 12 }),
    storeDown: FastCheck.boolean()
  }),
  FastCheck.record({ op: FastCheck.constantFrom("commit" as const, "release" as const) }),
  FastCheck.record({ op: FastCheck.constant("fill" as const), maxLines: FastCheck.integer({ min: 1, max: 6 }) }),
  FastCheck.record({
    op: FastCheck.constant("settle" as const),
    outcome: FastCheck.constantFrom("stored" as const, "deadLettered" as const, "lost" as const)
  }),
  FastCheck.record({ op: FastCheck.constant("takeAll" as const) })
)

describe("AdmissionBuffer: the ledger", () => {
  it.prop("accepted = stored + deadLettered + lost + queued + inFlight after any sequence", [
    FastCheck.array(step, { maxLength: 60 })
  ], ([steps]) => {
    const buffer = makeAdmissionBuffer(bounds)
    const reservations: Array<Job> = []
    const batches: Array<number> = []
    let next = 0
    for (const s of steps) {
      switch (s.op) {
        case "admit":
          buffer.admit(job(s.count, next), s.storeDown)
          next += s.count
          break
        case "reserve": {
          const held = buffer.reserve(job(s.count, next), s.storeDown)
          next += s.count
          if (typeof held !== "string") reservations.push(held)
          break
        }
        case "commit":
        case "release": {
          const held = reservations.shift()
          if (held !== undefined) s.op === "commit" ? buffer.commit(held) : buffer.release(held)
          break
        }
        case "fill": {
          const batch = emptyBatch()
          buffer.fill(batch, s.maxLines, 1_000_000)
          if (batch.lines > 0) batches.push(batch.lines)
          break
        }
        case "settle": {
          const lines = batches.shift()
          if (lines !== undefined) buffer.settle(lines, s.outcome)
          break
        }
        case "takeAll": {
          const lines = buffer.takeAll().reduce((n, j) => n + j.count, 0)
          if (lines > 0) batches.push(lines)
        }
      }
      const ledger = buffer.ledger()
      assert.isUndefined(checkLedger(ledger))
      const reserved = reservations.reduce((n, j) => n + j.count, 0)
      assert.isAtMost(ledger.queued + reserved, bounds.maxQueue, "the bound holds")
    }
  })
})
