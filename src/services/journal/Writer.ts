/**
 * The journal's group commit. Records are staged synchronously (on the request path: one copy
 * into a staging buffer, no fiber, no timer) with a callback each; one fiber writes everything
 * staged with one write and one fdatasync, then calls back, and starts the next write as soon as
 * that one ends, with whatever arrived meanwhile. A request's 202 waits for the fsync covering it.
 *
 * A segment is started (header written, file and directory fsynced) before anything in it is
 * acknowledged. After a failed write or fsync the segment is cut back to its last durable length
 * (ftruncate and fsync) or, if that fails too, left for a new one whose header records that
 * length: no record is ever acknowledged behind a failed range, and recovery never reads one.
 * While failing, the writer probes about once a second with a record recovery skips.
 */
import { join } from "node:path"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { HEADER_BYTES, probeFrame, segmentHeader } from "../../domain/journal/Records.js"
import type { JournalFilesShape, JournalIoError } from "./JournalFiles.js"
import { newSegment, type RecordKind, type Segment, type Segments, setLive } from "./Segments.js"

const PROBE_EVERY = Duration.seconds(1)
const INITIAL_STAGING = 256 * 1024

export type Durable = (durable: boolean) => void

export interface WriterHooks {
  readonly fsyncSeconds: (seconds: number) => void
  readonly writeError: (error: JournalIoError) => Effect.Effect<void>
  readonly recovered: Effect.Effect<void>
  /** After each successful write: segments may have become removable. */
  readonly afterWrite: Effect.Effect<void>
}

export interface Writer {
  /**
   * Stages a record of `bytes` bytes that `fill` writes at `at` of `out`. `id` is its record id,
   * counted live in the segment it lands in as `kind` with `count`; 0 for a record nothing will
   * look up by id (settled, probe, or a copy whose caller relocates it).
   */
  readonly stage: (
    bytes: number,
    fill: (out: Buffer, at: number) => void,
    id: number,
    kind: RecordKind,
    count: number,
    done: Durable
  ) => void
  /** A write or fsync failed and no probe has succeeded since. */
  readonly failing: () => boolean
  /** Runs the group commit until interrupted. */
  readonly run: Effect.Effect<never>
  /** Calls `signal` once nothing is staged or being written. */
  readonly whenQuiet: (signal: () => void) => void
  /** Closes the current segment. */
  readonly close: Effect.Effect<void>
  readonly current: () => Segment | undefined
}

export const makeWriter = (
  files: JournalFilesShape,
  dir: string,
  firstSeq: number,
  /** The durable length of the last segment found at start, which the first new header records. */
  previousEnd: number,
  segmentBytes: number,
  segments: Segments,
  hooks: WriterHooks
): Effect.Effect<Writer> =>
  Effect.map(Effect.makeLatch(false), (staged) => {
    let buffer = Buffer.allocUnsafeSlow(INITIAL_STAGING)
    let spare = Buffer.allocUnsafeSlow(INITIAL_STAGING)
    let length = 0
    let callbacks: Array<Durable> = []
    let ids: Array<number> = []
    let kinds: Array<RecordKind> = []
    let counts: Array<number> = []
    let writing = false
    let failing = false
    let quiet: Array<() => void> = []

    let seq = firstSeq
    let fd: number | undefined
    let current: Segment | undefined
    // Durable length of the current segment, or of the one abandoned after a failure.
    let position = previousEnd
    let abandoned = false

    const stage: Writer["stage"] = (bytes, fill, id, kind, count, done) => {
      if (length + bytes > buffer.length) {
        const larger = Buffer.allocUnsafeSlow(Math.max(buffer.length * 2, length + bytes))
        buffer.copy(larger, 0, 0, length)
        buffer = larger
      }
      fill(buffer, length)
      length += bytes
      callbacks.push(done)
      if (id > 0) {
        ids.push(id)
        kinds.push(kind)
        counts.push(count)
      }
      staged.unsafeOpen()
    }

    /**
     * A new segment, durable with its directory entry before anything in it is acknowledged. If
     * that fails, its file is removed (best effort) and the next write tries again under the same
     * number, so that the header taking over still follows the segment it records the end of.
     */
    const startSegment = Effect.gen(function*() {
      if (fd !== undefined) {
        const old = fd
        fd = undefined
        yield* Effect.ignore(files.close(old))
      }
      const path = join(dir, `${String(seq + 1).padStart(10, "0")}.journal`)
      const handle = yield* files.create(path)
      const header = segmentHeader(position)
      const started = yield* Effect.exit(
        files.writeAt(handle, header, header.length, 0).pipe(
          Effect.zipRight(files.sync(handle)),
          Effect.zipRight(files.syncDir(dir))
        )
      )
      if (started._tag === "Failure") {
        yield* Effect.ignore(files.close(handle))
        yield* Effect.ignore(files.remove(path))
        return yield* started
      }
      fd = handle
      current = newSegment(++seq, path, HEADER_BYTES)
      segments.add(current)
      position = HEADER_BYTES
      abandoned = false
    })

    /** After a failure: cut the failed range off, or leave the segment for a new one. */
    const cutBack = (handle: number) =>
      files.truncate(handle, position).pipe(
        Effect.zipRight(files.sync(handle)),
        Effect.catchAll(() =>
          Effect.sync(() => {
            abandoned = true
          })
        )
      )

    const flush = Effect.gen(function*() {
      const out = buffer
      const bytes = length
      const done = callbacks
      const written = { ids, kinds, counts }
      buffer = spare
      spare = out
      length = 0
      callbacks = []
      ids = []
      kinds = []
      counts = []
      writing = true
      const exit = yield* Effect.exit(Effect.gen(function*() {
        if (fd === undefined || abandoned || (position + bytes > segmentBytes && position > HEADER_BYTES)) {
          yield* startSegment
        }
        yield* files.writeAt(fd!, out, bytes, position)
        const started = yield* Clock.currentTimeNanos
        yield* files.sync(fd!)
        hooks.fsyncSeconds(Number((yield* Clock.currentTimeNanos) - started) / 1e9)
      }))
      writing = false
      if (exit._tag === "Success") {
        position += bytes
        const segment = current!
        segment.bytes = position
        for (let i = 0; i < written.ids.length; i++) {
          setLive(segment, written.ids[i]!, written.kinds[i]!, written.counts[i]!)
        }
        if (failing) {
          failing = false
          yield* hooks.recovered
        }
        for (const callback of done) callback(true)
        yield* hooks.afterWrite
      } else {
        failing = true
        if (fd !== undefined && !abandoned) yield* cutBack(fd)
        if (exit.cause._tag === "Fail") yield* hooks.writeError(exit.cause.error)
        for (const callback of done) callback(false)
      }
      if (length === 0) {
        staged.unsafeClose()
        const waiting = quiet
        quiet = []
        for (const signal of waiting) signal()
      }
    })

    const probe = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.sync(() => {
        const frame = probeFrame(now)
        if (length === 0) stage(frame.length, (out, at) => frame.copy(out, at), 0, "lines", 0, () => {})
      }))

    const run: Effect.Effect<never> = Effect.gen(function*() {
      if (failing) {
        yield* Effect.sleep(PROBE_EVERY)
        yield* probe
      }
      yield* staged.await
      yield* flush
    }).pipe(Effect.forever)

    return {
      stage,
      failing: () => failing,
      run,
      whenQuiet: (signal) => {
        if (length === 0 && !writing) return signal()
        quiet.push(signal)
      },
      close: Effect.suspend(() => {
        const handle = fd
        fd = undefined
        return handle === undefined ? Effect.void : Effect.ignore(files.close(handle))
      }),
      current: () => current
    }
  })
