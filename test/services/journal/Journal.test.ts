/**
 * The journal at the fiber level, over a file system in memory: group commit, crash recovery
 * (a crash is the files as they are at one instant, read by a new queue), write failures, and the
 * shutdown that leaves what is not stored in the journal.
 */
import { assert, describe, it } from "@effect/vitest"
import { crc32 } from "node:zlib"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import * as TestClock from "effect/TestClock"
import { arrivalOf, buildQueue, ids, job, offer, sample } from "../../support/queue.js"
import { makeMemoryFiles } from "../../support/journalFiles.js"
import { makeHangingStore, makeMemoryDeadLetter, makeMemoryStore, makeScriptedStore } from "../../support/stores.js"
import { JournalLive } from "../../../src/services/journal/Journal.js"
import { testLayer } from "../../../src/services/AppConfig.js"
import { Metrics } from "../../../src/services/Metrics.js"
import * as Layer from "effect/Layer"
import { segmentHeader } from "../../../src/domain/journal/Records.js"

const JOURNAL = "/data/journal"
const journaled = { durability: "journal", maxWorkers: 2, batchMaxWaitMs: 10 } as const

const storedIds = (objects: Map<string, string>) => [...objects.values()].flatMap(ids).sort((a, b) => a - b)
const range = (from: number, count: number) => Array.from({ length: count }, (_, i) => from + i)

describe("journal: admission", () => {
  it.effect("answers after the covering fsync, many requests to one write and one fsync", () =>
    Effect.gen(function*() {
      const files = makeMemoryFiles()
      const store = yield* makeMemoryStore
      const dead = yield* makeMemoryDeadLetter
      const { close, queue } = yield* buildQueue(journaled, store.layer, dead.layer, files)
      const answers: Array<string> = []
      // Twenty requests in one turn: none is answered before the write that covers them all.
      for (let i = 0; i < 20; i++) {
        const admission = queue.offer(job(1, i))
        assert.notStrictEqual(typeof admission, "string", "answered only after the fsync")
        if (typeof admission !== "string") admission.onAnswer = (answer) => void answers.push(answer)
      }
      assert.deepStrictEqual(answers, [])
      assert.strictEqual(queue.stats().accepted, 0, "reserved, not accepted, before the fsync")
      yield* Effect.yieldNow()
      while (answers.length < 20) yield* Effect.sleep(0)
      assert.deepStrictEqual(new Set(answers), new Set(["admitted"]))
      assert.strictEqual(queue.stats().accepted, 20)
      // The segment's header, then one group.
      assert.strictEqual(files.calls.filter((op) => op === "write").length, 2)
      assert.strictEqual(files.calls.filter((op) => op === "fdatasync").length, 2)
      yield* close(1_000)
      assert.deepStrictEqual(storedIds(store.objects), range(0, 20))
    }))

  it.effect("refuses with journal_unavailable when the fsync fails, stores none of it, and probes back", () =>
    Effect.gen(function*() {
      const files = makeMemoryFiles()
      const store = yield* makeMemoryStore
      const dead = yield* makeMemoryDeadLetter
      const { close, metrics, queue } = yield* buildQueue(journaled, store.layer, dead.layer, files)
      assert.strictEqual(yield* offer(queue, job(2, 0)), "admitted")
      files.fail("fdatasync", "EIO")
      assert.strictEqual(yield* offer(queue, job(2, 100)), "journal_unavailable")
      assert.isTrue(queue.journalFailing())
      // While failing, refused at once: nothing is reserved or written.
      assert.strictEqual(yield* offer(queue, job(2, 200)), "journal_unavailable")
      assert.strictEqual(yield* sample(metrics, "s3ingest_journal_write_errors_total"), 1)
      files.heal()
      yield* TestClock.adjust(1_000) // the probe
      while (queue.journalFailing()) yield* TestClock.adjust(100)
      assert.strictEqual(yield* offer(queue, job(2, 300)), "admitted")
      const crashed = files.crash()
      yield* close(1_000)
      assert.deepStrictEqual(storedIds(store.objects), [0, 1, 300, 301])
      // And a crash now recovers nothing of the refused ones either.
      const again = yield* makeMemoryStore
      const second = yield* buildQueue(journaled, again.layer, dead.layer, crashed)
      yield* second.close(1_000)
      assert.notIncludeMembers(storedIds(again.objects), [100, 101, 200, 201])
    }))
  it.effect("a failed range that cannot be cut off is left behind: the next segment records where it ends", () =>
    Effect.gen(function*() {
      const files = makeMemoryFiles()
      const store = yield* makeMemoryStore
      const dead = yield* makeMemoryDeadLetter
      const { close, queue } = yield* buildQueue({ ...journaled, batchMaxWaitMs: 100_000 }, store.layer, dead.layer, files)
      assert.strictEqual(yield* offer(queue, job(2, 0)), "admitted")
      // The write lands, its fsync fails, and so does the truncation back.
      files.fail("fdatasync", "EIO", 1)
      files.fail("ftruncate", "EIO", 1)
      assert.strictEqual(yield* offer(queue, job(2, 100)), "journal_unavailable")
      yield* TestClock.adjust(1_000)
      while (queue.journalFailing()) yield* TestClock.adjust(100)
      assert.strictEqual(yield* offer(queue, job(2, 200)), "admitted")
      assert.strictEqual(files.segments(JOURNAL).length, 2, "a new segment took over")
      const crashed = files.crash()
      const again = yield* makeMemoryStore
      const second = yield* buildQueue(journaled, again.layer, dead.layer, crashed)
      yield* second.close(1_000)
      assert.deepStrictEqual(storedIds(again.objects), [0, 1, 200, 201])
      yield* close(1_000)
    }))

  it.effect("ENOSPC on the write: refused, nothing of it stored", () =>
    Effect.gen(function*() {
      const files = makeMemoryFiles()
      const store = yield* makeMemoryStore
      const dead = yield* makeMemoryDeadLetter
      const { close, queue } = yield* buildQueue(journaled, store.layer, dead.layer, files)
      files.fail("write", "ENOSPC", 1)
      assert.strictEqual(yield* offer(queue, job(3, 0)), "journal_unavailable")
      yield* TestClock.adjust(1_000)
      while (queue.journalFailing()) yield* TestClock.adjust(100)
      assert.strictEqual(yield* offer(queue, job(1, 10)), "admitted")
      yield* close(1_000)
      assert.deepStrictEqual(storedIds(store.objects), [10])
    }))
})

describe("journal: recovery", () => {
  it.effect("a crash with a batch in flight: the next start uploads it under the same key, with the same lines", () =>
    Effect.gen(function*() {
      const files = makeMemoryFiles()
      const hanging = yield* makeHangingStore
      const dead = yield* makeMemoryDeadLetter
      const first = yield* buildQueue(journaled, hanging.layer, dead.layer, files)
      assert.strictEqual(yield* offer(first.queue, job(3, 0)), "admitted")
      assert.strictEqual(yield* offer(first.queue, job(2, 3)), "admitted")
      yield* TestClock.adjust(10)
      const key = yield* Queue.take(hanging.started)
      // Crash now: the batch record is durable, the upload hangs.
      const crashed = files.crash()
      assert.strictEqual(yield* offer(first.queue, job(1, 9)), "admitted")
      const crashedLater = files.crash()

      const store = yield* makeMemoryStore
      const second = yield* buildQueue(journaled, store.layer, dead.layer, crashed)
      assert.strictEqual(yield* Queue.take(store.puts), key)
      assert.deepStrictEqual(ids(store.objects.get(key)!), range(0, 5))
      assert.strictEqual(yield* sample(second.metrics, "s3ingest_journal_recovered_payloads_total"), 5)
      yield* second.close(1_000)
      assert.deepInclude(yield* second.summary, { recovered: 5, stored: 5, journaled: 0 })

      // The later crash also holds a line in no batch: it is stored in a batch of its own.
      const store2 = yield* makeMemoryStore
      const third = yield* buildQueue(journaled, store2.layer, dead.layer, crashedLater)
      yield* third.close(1_000)
      assert.deepStrictEqual(storedIds(store2.objects), range(0, 5).concat([9]))
      assert.strictEqual(store2.objects.get(key), store.objects.get(key))
      yield* first.close(30_000)
    }))

  it.effect("shutdown leaves what is not stored in the journal (exit 1), and the next start stores it", () =>
    Effect.gen(function*() {
      const files = makeMemoryFiles()
      const hanging = yield* makeHangingStore
      const dead = yield* makeMemoryDeadLetter
      const first = yield* buildQueue({ ...journaled, shutdownTimeoutMs: 4_000 }, hanging.layer, dead.layer, files)
      assert.strictEqual(yield* offer(first.queue, job(4, 0)), "admitted")
      yield* TestClock.adjust(10)
      yield* Queue.take(hanging.started)
      yield* first.close(10_000)
      assert.deepInclude(yield* first.summary, { accepted: 4, stored: 0, deadLettered: 0, journaled: 4, lost: 0 })
      assert.strictEqual(yield* first.exitCode, 1)
      assert.strictEqual(dead.files.size, 0, "nothing dead-lettered at shutdown")

      const store = yield* makeMemoryStore
      const second = yield* buildQueue(journaled, store.layer, dead.layer, files)
      yield* second.close(1_000)
      assert.deepStrictEqual(storedIds(store.objects), range(0, 4))
      assert.strictEqual(yield* second.exitCode, 0)
      // Everything settled: the segments that held it are gone.
      assert.isAtMost(files.segments(JOURNAL).length, 1)
    }))

  it.effect("a torn tail is cut off; a damaged record elsewhere sets its segment aside and the rest is recovered", () =>
    Effect.gen(function*() {
      const files = makeMemoryFiles()
      const hanging = yield* makeHangingStore
      const dead = yield* makeMemoryDeadLetter
      const first = yield* buildQueue({ ...journaled, batchMaxWaitMs: 100_000 }, hanging.layer, dead.layer, files)
      for (let i = 0; i < 3; i++) assert.strictEqual(yield* offer(first.queue, job(1, i)), "admitted")
      const crashed = files.crash()
      const [segment] = crashed.segments(JOURNAL)
      const bytes = crashed.files.get(segment!)!
      // A torn write after the last record.
      crashed.files.set(segment!, Buffer.concat([bytes, Buffer.from([40, 0, 0, 0, 1, 2, 3])]))
      const store = yield* makeMemoryStore
      const second = yield* buildQueue(journaled, store.layer, dead.layer, crashed)
      yield* second.close(1_000)
      assert.deepStrictEqual(storedIds(store.objects), [0, 1, 2])
      assert.strictEqual(yield* sample(second.metrics, "s3ingest_journal_corrupt_records_total"), 0)

      // A changed byte inside the second record, with a good record after it.
      const damaged = files.crash()
      const file = Buffer.from(damaged.files.get(segment!)!)
      const secondRecord = 16 + file.readUInt32LE(16) + 8
      file[secondRecord + 12] = file[secondRecord + 12]! ^ 0xff
      damaged.files.set(segment!, file)
      const store2 = yield* makeMemoryStore
      const third = yield* buildQueue(journaled, store2.layer, dead.layer, damaged)
      yield* third.close(1_000)
      assert.deepStrictEqual(storedIds(store2.objects), [0, 2])
      assert.strictEqual(yield* sample(third.metrics, "s3ingest_journal_corrupt_records_total"), 1)
      assert.isTrue([...damaged.files.keys()].some((path) => path.startsWith("/data/journal-corrupt/")))
      yield* first.close(30_000)
    }))

  it.effect("a batch whose dead-letter file exists is settled, not uploaded", () =>
    Effect.gen(function*() {
      const files = makeMemoryFiles()
      const hanging = yield* makeHangingStore
      const dead = yield* makeMemoryDeadLetter
      const first = yield* buildQueue(journaled, hanging.layer, dead.layer, files)
      assert.strictEqual(yield* offer(first.queue, job(2, 0)), "admitted")
      yield* TestClock.adjust(10)
      const key = yield* Queue.take(hanging.started)
      const crashed = files.crash()
      dead.files.set(key, `{"id":0}\n{"id":1}\n`)
      const store = yield* makeMemoryStore
      const second = yield* buildQueue(journaled, store.layer, dead.layer, crashed)
      yield* second.close(1_000)
      assert.strictEqual(store.objects.size, 0)
      yield* first.close(30_000)
    }))

  it.effect("a journal is recovered with DURABILITY=memory too, and emptied as its batches are stored", () =>
    Effect.gen(function*() {
      const files = makeMemoryFiles()
      const hanging = yield* makeHangingStore
      const dead = yield* makeMemoryDeadLetter
      const first = yield* buildQueue({ ...journaled, batchMaxWaitMs: 100_000 }, hanging.layer, dead.layer, files)
      assert.strictEqual(yield* offer(first.queue, job(3, 0)), "admitted")
      const crashed = files.crash()
      const store = yield* makeMemoryStore
      const second = yield* buildQueue({ durability: "memory" }, store.layer, dead.layer, crashed)
      yield* second.close(1_000)
      assert.deepStrictEqual(storedIds(store.objects), [0, 1, 2])
      assert.deepInclude(yield* second.summary, { recovered: 3, stored: 3, journaled: 0 })
      assert.isAtMost(crashed.segments(JOURNAL).length, 1)
      yield* first.close(30_000)
    }))

  it.effect("a segment of an unknown format stops the start", () =>
    Effect.gen(function*() {
      const files = makeMemoryFiles()
      const header = segmentHeader(0)
      header.writeUInt16LE(99, 4)
      header.writeUInt32LE(crc32(header.subarray(0, 12)), 12)
      files.files.set(`${JOURNAL}/0000000001.journal`, header)
      const exit = yield* Effect.exit(Effect.scoped(Layer.build(
        JournalLive.pipe(Layer.provide(Layer.mergeAll(files.layer, Metrics.Default, testLayer({ dataDir: "/data" }))))
      )))
      assert.isTrue(Exit.isFailure(exit))
      assert.match(String(Exit.isFailure(exit) ? exit.cause : ""), /JournalUnreadable/)
    }))
})

describe("journal: compaction", () => {
  /** `count` payloads of about 1 KB each, ids from `from`. */
  const large = (from: number, count: number) =>
    arrivalOf(JSON.stringify({
      version: "1",
      token: "t",
      data: Array.from({ length: count }, (_, i) => ({ id: from + i, pad: "x".repeat(1000) }))
    }))

  it.effect("a batch that never stores does not keep old segments: they are compacted, and a crash then recovers only it", () =>
    Effect.gen(function*() {
      const files = makeMemoryFiles()
      const store = yield* makeScriptedStore(["hang", "ok"])
      const dead = yield* makeMemoryDeadLetter
      const settings = { ...journaled, maxQueueBytes: 65_536, batchMaxItems: 10, uploadTimeoutMs: 1_000_000 }
      const first = yield* buildQueue(settings, store.layer, dead.layer, files)
      // About 2.5 MB through the journal while the first batch hangs: past its bound of 2 × 64 KiB + 1 MiB.
      let next = 0
      while (next < 2_500) {
        // 15 payloads to a request and 10 to a batch: the hung batch holds part of a request's record.
        const admission = yield* offer(first.queue, large(next, 15))
        if (admission === "admitted") next += 15
        else yield* TestClock.adjust(1)
      }
      while (first.queue.stats().queued > 0 || first.queue.stats().inFlight > 10) yield* TestClock.adjust(1)
      const hung = store.attempts[0]!.key
      assert.notInclude(files.segments(JOURNAL), `${JOURNAL}/0000000001.journal`, "the oldest segment was compacted away")
      const bytes = files.segments(JOURNAL).reduce((n, path) => n + files.files.get(path)!.length, 0)
      assert.isBelow(bytes, 2 * 65_536 + 2 * 1_048_576)

      const crashed = files.crash()
      const again = yield* makeMemoryStore
      const second = yield* buildQueue(journaled, again.layer, dead.layer, crashed)
      yield* second.close(1_000)
      assert.deepStrictEqual([...again.objects.keys()], [hung])
      assert.deepStrictEqual(storedIds(again.objects), range(0, 10))
      yield* first.close(30_000)
    }))
})
