/**
 * The admission buffer on its own: bounds, reserve → commit → release, one open batch per
 * partition with its own window and limits, MAX_PARTITIONS, the idle signal, and the ledger
 * invariant under any sequence of operations.
 */
import { assert, describe, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import { type Batch, encodeBatch } from "../../../src/domain/Batch.js"
import { DEFAULT_PARTITIONS, type PartitionTemplate, parseTemplate } from "../../../src/domain/Partitions.js"
import {
  type AdmissionBuffer,
  type BufferSettings,
  checkLedger,
  makeAdmissionBuffer,
  type Reservation
} from "../../../src/services/buffer/AdmissionBuffer.js"
import { arrivalOf, ids, job } from "../../support/queue.js"

const template = (text: string): PartitionTemplate => {
  const parsed = parseTemplate(text)
  if ("error" in parsed) throw new Error(parsed.error)
  return parsed
}

const defaults: BufferSettings = {
  maxQueue: 10,
  maxQueueBytes: 1_000_000,
  shedHighWater: 0.5,
  batchMaxItems: 100,
  batchMaxBytes: 1_000_000,
  batchMaxWaitMs: 200,
  maxPartitions: 64,
  partitions: DEFAULT_PARTITIONS
}

/** A buffer and the batches it offered, in order. */
const bufferWith = (settings: Partial<BufferSettings> = {}) => {
  const offered: Array<Batch> = []
  let dueSignals = 0
  const buffer = makeAdmissionBuffer({ ...defaults, ...settings }, (batch) => offered.push(batch), () => dueSignals++)
  return { buffer, offered, dueSignals: () => dueSignals }
}

const idsOf = (batch: Batch) => ids(encodeBatch(batch.jobs).toString("utf8"))

/** A collection of `count` payloads `{"id":from…}` under `version`. */
const versioned = (version: string, count: number, from: number) =>
  arrivalOf(JSON.stringify({ version, token: "t", data: Array.from({ length: count }, (_, i) => ({ id: from + i })) }))

describe("AdmissionBuffer: admission", () => {
  it("is all-or-nothing at the payload bound, counting reserved lines against it", () => {
    const { buffer } = bufferWith()
    const held = buffer.reserve(job(4), false, 0)
    assert.notStrictEqual(typeof held, "string")
    assert.strictEqual(buffer.admit(job(6, 4), false, 0), "admitted")
    assert.strictEqual(buffer.admit(job(1, 10), false, 0), "full", "4 reserved + 6 queued")
    assert.strictEqual(buffer.admit(job(11), false, 0), "too_large")
    assert.deepStrictEqual(buffer.ledger(), {
      accepted: 6,
      recovered: 0,
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
    const { buffer } = bufferWith({ maxQueueBytes: size * 3 })
    assert.strictEqual(buffer.admit(job(2), false, 0), "admitted")
    assert.strictEqual(buffer.admit(job(2, 2), false, 0), "full")
    assert.strictEqual(buffer.admit(job(1, 4), false, 0), "admitted")
    assert.strictEqual(buffer.admit(job(4), false, 0), "too_large")
  })

  it("sheds above the high-water mark while the store is down, and only then", () => {
    const { buffer } = bufferWith()
    assert.strictEqual(buffer.admit(job(5), true, 0), "admitted", "5 of 10 is at the mark, not above")
    assert.strictEqual(buffer.admit(job(1, 5), true, 0), "shedding")
    assert.strictEqual(buffer.admit(job(1, 5), false, 0), "admitted")
  })

  it("reserved lines join no batch and count as accepted only once committed; released ones never", () => {
    const { buffer, offered } = bufferWith({ batchMaxWaitMs: 0 })
    const first = buffer.reserve(job(2), false, 0) as Reservation
    const second = buffer.reserve(job(3, 2), false, 0) as Reservation
    assert.deepStrictEqual([offered.length, buffer.ledger().accepted], [0, 0])
    buffer.release(first)
    buffer.commit(second, 0)
    assert.deepStrictEqual(offered.map(idsOf), [[2, 3, 4]])
    assert.strictEqual(buffer.ledger().accepted, 3)
    assert.isUndefined(checkLedger(buffer.ledger()))
  })

  it("lines in open batches count against the bound; lines taken by a worker do not", () => {
    const { buffer, offered } = bufferWith({ batchMaxWaitMs: 0 })
    assert.strictEqual(buffer.admit(job(10), false, 0), "admitted")
    assert.strictEqual(buffer.admit(job(1, 10), false, 0), "full")
    buffer.take(offered[0]!)
    assert.deepStrictEqual([buffer.ledger().queued, buffer.ledger().inFlight], [0, 10])
    assert.strictEqual(buffer.admit(job(10, 10), false, 0), "admitted")
  })
})

describe("AdmissionBuffer: batches", () => {
  it("offers a batch when it fills, splitting a collection at the bound, and keeps the rest open", () => {
    const { buffer, offered } = bufferWith({ batchMaxItems: 4, maxQueue: 20 })
    buffer.admit(job(3, 0, 1), false, 0)
    assert.strictEqual(offered.length, 0, "not full, not due")
    buffer.admit(job(3, 3, 2), false, 0)
    assert.deepStrictEqual(offered.map(idsOf), [[0, 1, 2, 3]])
    assert.strictEqual(buffer.offerDue(199), 200, "the rest waits for its window")
    assert.strictEqual(buffer.offerDue(200), undefined)
    assert.deepStrictEqual(offered.map(idsOf), [[0, 1, 2, 3], [4, 5]])
  })

  it("an offered batch keeps taking its partition's lines until a worker takes it", () => {
    const { buffer, offered } = bufferWith({ batchMaxWaitMs: 0 })
    buffer.admit(job(1, 0, 1), false, 0)
    buffer.admit(job(2, 1, 2), false, 5)
    assert.strictEqual(offered.length, 1)
    buffer.take(offered[0]!)
    buffer.admit(job(1, 3, 3), false, 6)
    assert.deepStrictEqual(offered.map(idsOf), [[0, 1, 2], [3]])
  })

  it("keeps one open batch per partition, each with its own window", () => {
    const { buffer, dueSignals, offered } = bufferWith({ partitions: template("v={version}/{hh}") })
    buffer.admit(versioned("a", 1, 0), false, 0)
    buffer.admit(versioned("b", 1, 1), false, 50)
    buffer.admit(versioned("a", 1, 2), false, 60)
    assert.strictEqual(dueSignals(), 1)
    assert.strictEqual(buffer.offerDue(199), 200)
    assert.strictEqual(buffer.offerDue(200), 250)
    assert.deepStrictEqual(offered.map((b) => [b.partition, idsOf(b)]), [["v=a/00", [0, 2]]])
    buffer.offerDue(250)
    assert.deepStrictEqual(offered.map((b) => [b.partition, idsOf(b)]), [["v=a/00", [0, 2]], ["v=b/00", [1]]])
  })

  it("an hour boundary opens a new batch: partitions come from when a batch opened", () => {
    const { buffer, offered } = bufferWith()
    buffer.admit(job(1, 0, 1), false, 3_599_999)
    buffer.admit(job(1, 1, 2), false, 3_600_000)
    buffer.offerAll()
    assert.deepStrictEqual(offered.map((b) => [b.partition, b.openedAt]), [
      ["1970/01/01/00", 3_599_999],
      ["1970/01/01/01", 3_600_000]
    ])
  })

  it("sends unsafe versions to _invalid and new ones past MAX_PARTITIONS to _overflow, until one drains", () => {
    const { buffer, offered } = bufferWith({ partitions: template("{version}"), maxPartitions: 2 })
    for (const [i, version] of ["1.0", "../x", "2.0", "3.0", "1.0"].entries()) buffer.admit(versioned(version, 1, i), false, 0)
    buffer.offerAll()
    assert.deepStrictEqual(offered.map((b) => [b.partition, idsOf(b)]), [
      ["1.0", [0, 4]],
      ["_invalid", [1]],
      ["2.0", [2]],
      ["_overflow", [3]]
    ])
    for (const batch of offered) buffer.take(batch)
    buffer.admit(versioned("3.0", 1, 5), false, 1)
    buffer.offerAll()
    assert.strictEqual(offered[4]!.partition, "3.0", "taken batches free their versions")
  })

  it("counts reserved lines' versions against MAX_PARTITIONS, and a release frees its version", () => {
    const { buffer } = bufferWith({ partitions: template("{version}"), maxPartitions: 2 })
    const reserve = (version: string, id: number) => {
      const reservation = buffer.reserve(versioned(version, 1, id), false, 0)
      if (typeof reservation === "string") throw new Error(reservation)
      return reservation
    }
    const [x, y, z] = [reserve("x", 0), reserve("y", 1), reserve("z", 2)]
    assert.deepStrictEqual([x.version, y.version, z.version], ["x", "y", "_overflow"])
    buffer.release(y)
    assert.strictEqual(reserve("w", 3).version, "w")
    buffer.commit(x, 0)
    assert.strictEqual(reserve("v", 4).version, "_overflow", "x (now queued) and w hold both places")
  })

  it("offers open batches before their window once the queue is past half of a bound", () => {
    const { buffer, offered } = bufferWith({ maxQueue: 10, batchMaxItems: 100, partitions: template("{version}") })
    buffer.admit(versioned("a", 3, 0), false, 0)
    buffer.admit(versioned("b", 2, 3), false, 0)
    assert.lengthOf(offered, 0, "5 of 10: the windows still run")
    buffer.admit(versioned("a", 1, 5), false, 1)
    assert.deepStrictEqual(offered.map((b) => [b.partition, idsOf(b)]), [["a", [0, 1, 2, 5]], ["b", [3, 4]]])
    buffer.admit(versioned("b", 1, 6), false, 2)
    assert.deepStrictEqual(idsOf(offered[1]!), [3, 4, 6], "an offered batch still takes lines until it is taken")
  })

  it("offers a quiet partition's batch once its line keeps a slab beyond the byte bound", () => {
    const per = versioned("busy", 2, 0).bytes
    const { buffer, offered } = bufferWith({
      maxQueue: 1_000,
      maxQueueBytes: per * 8,
      batchMaxItems: 2,
      partitions: template("{version}")
    })
    buffer.admit(versioned("quiet", 1, 0), false, 0)
    // The busy partition fills batch after batch, each taken and encoded at once: the queue stays
    // nearly empty while the quiet line keeps the first slab.
    for (let i = 0; i < 8 && offered.every((b) => b.partition !== "quiet"); i++) {
      buffer.admit(versioned("busy", 2, 10 + 2 * i), false, 0)
      const batch = offered.find((b) => b.partition === "busy" && !b.taken)!
      buffer.take(batch)
      buffer.releaseLines(batch.jobs)
      buffer.settle(batch.lines, "stored")
      assert.isAtMost(buffer.ledger().queuedBytes * 2, per * 8)
    }
    const quiet = offered.find((b) => b.partition === "quiet")
    assert.isDefined(quiet, "offered before its window")
    assert.deepStrictEqual(idsOf(quiet!), [0])
  })

  it("says when nothing is queued or in flight", () => {
    const { buffer, offered } = bufferWith({ batchMaxWaitMs: 0 })
    let idle = 0
    buffer.whenIdle(() => idle++)
    assert.strictEqual(idle, 1, "idle from the start")
    buffer.admit(job(2), false, 0)
    buffer.whenIdle(() => idle++)
    buffer.take(offered[0]!)
    buffer.settle(1, "stored")
    assert.strictEqual(idle, 1)
    buffer.settle(1, "deadLettered")
    assert.strictEqual(idle, 2)
  })
})

type Step =
  | { readonly op: "admit" | "reserve"; readonly count: number; readonly version: string; readonly storeDown: boolean }
  | { readonly op: "commit" | "release" }
  | { readonly op: "tick"; readonly millis: number }
  | { readonly op: "take" }
  | { readonly op: "settle"; readonly outcome: "stored" | "deadLettered" | "lost" }

const step: FastCheck.Arbitrary<Step> = FastCheck.oneof(
  FastCheck.record({
    op: FastCheck.constantFrom("admit" as const, "reserve" as const),
    count: FastCheck.integer({ min: 1, max: 12 }),
    version: FastCheck.constantFrom("a", "b", "c", "../bad"),
    storeDown: FastCheck.boolean()
  }),
  FastCheck.record({ op: FastCheck.constantFrom("commit" as const, "release" as const) }),
  FastCheck.record({ op: FastCheck.constant("tick" as const), millis: FastCheck.integer({ min: 0, max: 300 }) }),
  FastCheck.record({ op: FastCheck.constant("take" as const) }),
  FastCheck.record({
    op: FastCheck.constant("settle" as const),
    outcome: FastCheck.constantFrom("stored" as const, "deadLettered" as const, "lost" as const)
  })
)

describe("AdmissionBuffer: the ledger", () => {
  it.prop("accepted = stored + deadLettered + lost + queued + inFlight after any sequence", [
    FastCheck.array(step, { maxLength: 80 })
  ], ([steps]) => {
    const offered: Array<Batch> = []
    const buffer: AdmissionBuffer = makeAdmissionBuffer(
      { ...defaults, batchMaxItems: 5, maxPartitions: 2, partitions: template("{version}/{hh}") },
      (batch) => offered.push(batch),
      () => {}
    )
    const reservations: Array<Reservation> = []
    const taken: Array<number> = []
    const everOffered = new Set<Batch>()
    const committedIds: Array<number> = []
    const idsOfArrival = (from: number, count: number) => Array.from({ length: count }, (_, i) => from + i)
    const held = new Map<Reservation, Array<number>>()
    let now = 0
    let next = 0
    for (const s of steps) {
      switch (s.op) {
        case "admit":
          if (buffer.admit(versioned(s.version, s.count, next), s.storeDown, now) === "admitted") {
            committedIds.push(...idsOfArrival(next, s.count))
          }
          next += s.count
          break
        case "reserve": {
          const reservation = buffer.reserve(versioned(s.version, s.count, next), s.storeDown, 0)
          if (typeof reservation !== "string") {
            reservations.push(reservation)
            held.set(reservation, idsOfArrival(next, s.count))
          }
          next += s.count
          break
        }
        case "commit":
        case "release": {
          const reservation = reservations.shift()
          if (reservation === undefined) break
          if (s.op === "commit") {
            buffer.commit(reservation, now)
            committedIds.push(...held.get(reservation)!)
          } else {
            buffer.release(reservation)
          }
          break
        }
        case "tick":
          now += s.millis
          buffer.offerDue(now)
          break
        case "take": {
          const batch = offered.shift()
          if (batch !== undefined && !batch.taken) {
            buffer.take(batch)
            taken.push(batch.lines)
          }
          break
        }
        case "settle": {
          const lines = taken.shift()
          if (lines !== undefined) buffer.settle(lines, s.outcome)
        }
      }
      const ledger = buffer.ledger()
      assert.isUndefined(checkLedger(ledger))
      const reserved = reservations.reduce((n, r) => n + r.job.count, 0)
      assert.isAtMost(ledger.queued + reserved, defaults.maxQueue, "the bound holds")
      for (const batch of offered) {
        everOffered.add(batch)
        assert.isAtMost(batch.lines, 5, "no batch beyond BATCH_MAX_ITEMS")
      }
      const batching = new Set(
        [...everOffered].filter((b) => !b.taken && b.lines > 0).map((b) => b.version).concat(reservations.map((r) => r.version))
      )
      batching.delete("_invalid")
      batching.delete("_overflow")
      assert.isAtMost(batching.size, 2, "MAX_PARTITIONS versions batching, offered or reserved")
    }
    buffer.offerAll()
    for (const batch of offered) everOffered.add(batch)
    const offeredIds = [...everOffered].flatMap(idsOf)
    assert.deepStrictEqual(offeredIds.sort((a, b) => a - b), committedIds.sort((a, b) => a - b), "every committed line offered once")
  })
})
