/**
 * The batch window. One worker at a time collects: it waits for a first line, then takes lines
 * until its batch is full, `BATCH_MAX_WAIT_MS` has passed since that first line, or intake has
 * closed; meanwhile the others upload. Were all idle workers waiting on the buffer, each line of
 * a burst would go to a different worker, and light load would write one object per payload.
 *
 * The collector waits on one signal, `wake`, opened by the buffer once enough lines are waiting
 * to fill the batch, or by one long-lived fiber once the batch is due. `Effect.timeoutOption`
 * around each wait would fork two fibers and join one per batch, which cost more than the rest of
 * the collector's turn.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type { OpenBatch } from "../../domain/Batch.js"
import type { Settings } from "../AppConfig.js"
import type { AdmissionBuffer } from "../buffer/AdmissionBuffer.js"

export type BatchSettings = Pick<Settings, "batchMaxItems" | "batchMaxBytes" | "batchMaxWaitMs">

export interface Collector {
  /**
   * In its turn, fills `batch` from the buffer: waits for a first line, then until the batch is
   * full, due, or intake closed. Returns when the batch opened (its first line's time).
   */
  readonly collect: (batch: OpenBatch) => Effect.Effect<number>
  /** Ends every wait at once: batches go as they are (shutdown). */
  readonly wakeNow: () => void
}

export const makeCollector = (
  buffer: AdmissionBuffer,
  settings: BatchSettings,
  intakeOpen: () => boolean
): Effect.Effect<Collector, never, Scope.Scope> =>
  Effect.gen(function*() {
    const wake = yield* Effect.makeLatch(false)
    const open = () => wake.unsafeOpen()
    // When the waiting collector's batch is due (epoch millis), and open while one waits.
    let dueAt = Number.POSITIVE_INFINITY
    const timing = yield* Effect.makeLatch(false)

    /**
     * A batch opens after the one before it, so a due time is never earlier than one this fiber
     * is already sleeping towards; waking for a batch that has since closed costs one check.
     */
    const openWhenDue = Effect.gen(function*() {
      while (true) {
        yield* timing.await
        const now = yield* Clock.currentTimeMillis
        if (now >= dueAt) {
          timing.unsafeClose()
          open()
        } else {
          yield* Effect.sleep(Duration.millis(dueAt - now))
        }
      }
    })
    // Layers are built uninterruptibly and a fork inherits that.
    yield* Effect.forkScoped(Effect.interruptible(openWhenDue))

    /**
     * Waits until `lines` lines or `bytes` bytes are waiting, or, for an open batch, until `due`
     * (epoch millis) or intake closes. A first line has no due time: there is nothing to send yet.
     */
    const waitFor = (lines: number, bytes: number, due: number | undefined) =>
      Effect.suspend(() => {
        wake.unsafeClose()
        buffer.wakeAt(lines, bytes, open)
        if (due !== undefined) {
          if (!intakeOpen()) open()
          dueAt = due
          timing.unsafeOpen()
        }
        return Effect.ensuring(
          wake.await,
          Effect.sync(() => {
            timing.unsafeClose()
            dueAt = Number.POSITIVE_INFINITY
          })
        )
      })

    const fill = (batch: OpenBatch) =>
      Effect.gen(function*() {
        while (batch.lines === 0) {
          buffer.fill(batch, settings.batchMaxItems, settings.batchMaxBytes)
          if (batch.lines === 0) yield* waitFor(1, 1, undefined)
        }
        const openedAt = yield* Clock.currentTimeMillis
        const closesAt = openedAt + settings.batchMaxWaitMs
        while (!buffer.fill(batch, settings.batchMaxItems, settings.batchMaxBytes)) {
          if ((yield* Clock.currentTimeMillis) >= closesAt || !intakeOpen()) break
          yield* waitFor(settings.batchMaxItems - batch.lines, settings.batchMaxBytes - batch.bytes, closesAt)
        }
        return openedAt
      })

    // The turn is a token in a one-place queue, which hands it to the longest-waiting worker
    // alone. Effect's semaphore resumes every waiting fiber when its permit is released, and all
    // but one then wait again: with 16 workers that was about 20 wake-ups per batch.
    const turn = yield* Queue.bounded<void>(1)
    yield* Queue.offer(turn, undefined)

    return {
      collect: (batch) =>
        Effect.acquireUseRelease(Queue.take(turn), () => fill(batch), () => Queue.offer(turn, undefined)),
      wakeNow: open
    }
  })
