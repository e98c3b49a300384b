/**
 * What recovery found goes back into the queue before any worker starts: every unsettled batch
 * under its own key with its own lines and codec (or settled, if its dead-letter file exists), and
 * the lines that were in no batch, cut into new batches that are keyed and recorded here, so that
 * nothing recovered ever shares a batch with new traffic. Recovered lines may take the queue past
 * its bounds for a while; intake sheds until they drain.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import { type Batch, newBatch } from "../../domain/Batch.js"
import { type Codec, codecOf } from "../../domain/Codec.js"
import type { Span } from "../../domain/journal/Records.js"
import { partitionPath, type PartitionTemplate } from "../../domain/Partitions.js"
import type { AdmissionBuffer } from "../buffer/AdmissionBuffer.js"
import type { Metrics } from "../Metrics.js"
import type { DeadLetterShape } from "../ObjectStore.js"
import type { JournalShape } from "./Journal.js"
import type { RecoveredLines } from "./Recovery.js"

export interface RequeueParts {
  readonly journal: JournalShape
  readonly deadLetter: DeadLetterShape
  readonly buffer: AdmissionBuffer
  readonly metrics: Metrics
  /** Hands a batch to the workers. */
  readonly offer: (batch: Batch) => void
  /** A new key for a batch of `partition` created at `now`. */
  readonly keyOf: (partition: string, now: number, codec: Codec) => string
  readonly codec: Codec
  readonly partitions: PartitionTemplate
  readonly batchMaxItems: number
  readonly batchMaxBytes: number
}

const LF = 0x0a

const keyedBatch = (key: string, codec: Codec, id: number, spans: ReadonlyArray<Span>, raw: Buffer, lines: number, now: number) => {
  const batch = newBatch("", "", now)
  batch.key = key
  batch.codec = codec
  batch.journalId = id
  batch.spans = spans
  batch.raw = raw
  batch.lines = lines
  batch.bytes = raw.length
  batch.offered = true
  return batch
}

/** Lines of one `{version}` cut into batches within the limits, each with the spans it holds. */
const cut = (parts: ReadonlyArray<RecoveredLines>, maxItems: number, maxBytes: number) => {
  const batches: Array<{ spans: Array<Span>; chunks: Array<Buffer>; lines: number; bytes: number }> = []
  let current = { spans: [] as Array<Span>, chunks: [] as Array<Buffer>, lines: 0, bytes: 0 }
  for (const part of parts) {
    let at = 0
    for (let k = 0; k < part.count; k++) {
      const end = part.lines.indexOf(LF, at) + 1
      const size = end - at
      if (current.lines > 0 && (current.lines + 1 > maxItems || current.bytes + size > maxBytes)) {
        batches.push(current)
        current = { spans: [], chunks: [], lines: 0, bytes: 0 }
      }
      const last = current.spans[current.spans.length - 1]
      if (last !== undefined && last.record === part.record && last.line + last.count === part.line + k) {
        current.spans[current.spans.length - 1] = { ...last, count: last.count + 1 }
      } else current.spans.push({ record: part.record, line: part.line + k, count: 1 })
      current.chunks.push(part.lines.subarray(at, end))
      current.lines++
      current.bytes += size
      at = end
    }
  }
  if (current.lines > 0) batches.push(current)
  return batches
}

/** Puts what the journal held back in the queue; logs `journal recovered` when it held something. */
export const requeueRecovered = (parts: RequeueParts, startedAt: number) =>
  Effect.gen(function*() {
    const { buffer, journal } = parts
    const recovered = journal.takeRecovered()
    const now = yield* Clock.currentTimeMillis
    let payloads = 0
    let batches = 0
    const enqueue = (batch: Batch) => {
      buffer.recover(batch)
      payloads += batch.lines
      batches++
      parts.offer(batch)
    }

    for (const found of recovered.batches) {
      if (yield* parts.deadLetter.exists(found.key)) {
        journal.settle(found.id, found.spans, "deadLettered")
        continue
      }
      const codec = codecOf(found.compression, found.level)
      enqueue(keyedBatch(found.key, codec, found.id, found.spans, found.raw, found.count, now))
    }

    for (const lost of recovered.unreadable) {
      let count = 0
      for (const span of lost.spans) count += span.count
      const batch = keyedBatch(lost.key, parts.codec, lost.id, lost.spans, Buffer.alloc(0), count, now)
      buffer.recover(batch)
      buffer.take(batch)
      buffer.settle(count, "lost")
      parts.metrics.payloadsLost.inc(count)
      journal.settle(lost.id, lost.spans, "lost")
      yield* Effect.logError("journaled batch unreadable: payloads lost").pipe(
        Effect.annotateLogs({ key: lost.key, payloads: count })
      )
    }

    const byVersion = new Map<string, Array<RecoveredLines>>()
    for (const part of recovered.unbatched) {
      const list = byVersion.get(part.version)
      if (list === undefined) byVersion.set(part.version, [part])
      else list.push(part)
    }
    const fresh: Array<Batch> = []
    for (const [version, list] of byVersion) {
      const partition = partitionPath(parts.partitions, now, version)
      for (const piece of cut(list, parts.batchMaxItems, parts.batchMaxBytes)) {
        const key = parts.keyOf(partition, now, parts.codec)
        fresh.push(keyedBatch(key, parts.codec, 0, piece.spans, Buffer.concat(piece.chunks), piece.lines, now))
      }
    }
    // Recorded together: one fsync for all of them.
    yield* Effect.forEach(
      fresh,
      (batch) =>
        Effect.map(journal.recordBatch(batch.key!, parts.codec, batch.spans), (id) => {
          batch.journalId = id
        }),
      { concurrency: "unbounded", discard: true }
    )
    for (const batch of fresh) enqueue(batch)

    parts.metrics.journalRecovered(payloads)
    const segments = recovered.segments.length + recovered.quarantine.length
    if (segments > 0) {
      yield* Effect.logInfo("journal recovered").pipe(
        Effect.annotateLogs({
          payloads,
          batches,
          segments,
          corruptRecords: recovered.corruptRecords,
          ms: (yield* Clock.currentTimeMillis) - startedAt
        })
      )
    }
  })
