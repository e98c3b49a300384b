/**
 * The receipts' one timer: a receipt not given within `ACK_TIMEOUT_MS` of its lines' commit is
 * answered 202. Every receipt waits as long as the others, so they fall due in the order they were
 * armed, and one FIFO is the whole schedule: one fiber sleeps until the oldest deadline (no fiber
 * and no timer per request). A receipt answered meanwhile is skipped when its time comes.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { answerReceipt, type Receipt } from "../../domain/Receipt.js"

export interface ReceiptDeadlines {
  /** The receipt's lines are committed at `now`: its deadline starts. */
  readonly arm: (receipt: Receipt, now: number) => void
  /** Answers every receipt still waiting with 202 (a drain reached its end). */
  readonly answerAll: () => void
  /** The timer; runs until interrupted. */
  readonly run: Effect.Effect<never>
}

export const makeReceiptDeadlines = (timeoutMs: number): Effect.Effect<ReceiptDeadlines> =>
  Effect.map(Effect.makeLatch(false), (waiting) => {
    let armed: Array<Receipt | undefined> = []
    let first = 0
    // Receipts answered before their deadline are let go when the FIFO has doubled since it was
    // last swept: it stays within about twice the receipts waiting, which open connections bound.
    let swept = 0

    /** Answers the receipts due by `now`; the next deadline, if any. */
    const expire = (now: number): number | undefined => {
      while (first < armed.length) {
        const receipt = armed[first]!
        if (receipt.answer !== undefined && receipt.deadline > now) {
          if (first > 1024 && first * 2 > armed.length) {
            armed = armed.slice(first)
            first = 0
          }
          return receipt.deadline
        }
        armed[first++] = undefined
        answerReceipt(receipt, false)
      }
      armed = []
      first = 0
      return undefined
    }

    return {
      arm: (receipt, now) => {
        receipt.deadline = now + timeoutMs
        if (armed.length - first > 2 * swept + 1024) {
          armed = armed.slice(first).filter((r) => r?.answer !== undefined)
          first = 0
          swept = armed.length
        }
        armed.push(receipt)
        if (armed.length - first === 1) waiting.unsafeOpen()
      },
      answerAll: () => {
        for (let i = first; i < armed.length; i++) answerReceipt(armed[i]!, false)
        armed = []
        first = 0
      },
      run: Effect.gen(function*() {
        yield* waiting.await
        const now = yield* Clock.currentTimeMillis
        const next = expire(now)
        if (next === undefined) waiting.unsafeClose()
        else yield* Effect.sleep(Duration.millis(next - now))
      }).pipe(Effect.forever)
    }
  })
