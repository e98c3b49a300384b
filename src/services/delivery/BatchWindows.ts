/**
 * The batch windows' timer: one long-lived fiber offers each open batch to the workers once
 * `BATCH_MAX_WAIT_MS` has passed since its first line. `Effect.timeoutOption` around each window
 * would fork two fibers and join one per batch, which cost more than the rest of a batch's
 * Effect code. Batches fall due in the order they opened, so the fiber sleeps until the oldest
 * one's time; waking for a batch that has since gone costs one check.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { AdmissionBuffer } from "../buffer/AdmissionBuffer.js"

export interface BatchWindows {
  /** The buffer's `due`: an open batch now waits for its window. */
  readonly due: () => void
  /** The timer; runs until interrupted. */
  readonly run: (buffer: AdmissionBuffer) => Effect.Effect<never>
}

export const makeBatchWindows: Effect.Effect<BatchWindows> = Effect.map(Effect.makeLatch(false), (waiting) => ({
  due: () => waiting.unsafeOpen(),
  run: (buffer) =>
    Effect.gen(function*() {
      yield* waiting.await
      const now = yield* Clock.currentTimeMillis
      const next = buffer.offerDue(now)
      if (next === undefined) waiting.unsafeClose()
      else yield* Effect.sleep(Duration.millis(next - now))
    }).pipe(
      // A defect here would leave every batch waiting for the shutdown: log it and keep the time.
      Effect.catchAllDefect((defect) => Effect.logError("batch windows defect", Cause.die(defect))),
      Effect.forever
    )
}))
