/**
 * The breaker's state machine alone: what opens it, how its cooldown grows and when it resets.
 */
import { assert, describe, it } from "@effect/vitest"
import {
  BREAKER_MAX_COOLDOWN_MILLIS,
  type BreakerState,
  closedBreaker,
  onFailure,
  onProbeFailure,
  onProbeStart,
  onProbeSuccess,
  onSuccess,
  probeDue
} from "../../src/domain/Breaker.js"

const settings = { failures: 3, cooldownMillis: 1_000 }

const failRetryable = (state: BreakerState, now = 0) => onFailure(state, settings, now, true)

describe("Breaker", () => {
  it("opens on the BREAKER_FAILURES-th consecutive retryable failure, at once on a permanent one", () => {
    const two = failRetryable(failRetryable(closedBreaker(settings)))
    assert.strictEqual(two.status, "closed")
    assert.strictEqual(two.failures, 2)
    assert.deepStrictEqual(failRetryable(two, 500), { status: "open", failures: 0, cooldownMillis: 1_000, openUntil: 1_500 })
    assert.strictEqual(onFailure(closedBreaker(settings), settings, 0, false).status, "open")
  })

  it("a success between failures starts the count again", () => {
    const reset = failRetryable(failRetryable(onSuccess(settings)))
    assert.strictEqual(failRetryable(failRetryable(reset)).status, "open")
    assert.strictEqual(failRetryable(failRetryable(onSuccess(settings))).status, "closed")
  })

  it("the probe is due once the cooldown has passed; failures while open or probing change nothing", () => {
    const open = onFailure(closedBreaker(settings), settings, 0, false)
    assert.isFalse(probeDue(open, 999))
    assert.isTrue(probeDue(open, 1_000))
    assert.deepStrictEqual(failRetryable(open), open)
    const probing = onProbeStart(open)
    assert.strictEqual(probing.status, "half-open")
    assert.isFalse(probeDue(probing, 5_000))
    assert.deepStrictEqual(failRetryable(probing), probing)
  })

  it("a failed probe reopens for twice the cooldown, capped at 30 s", () => {
    let state = onFailure(closedBreaker(settings), settings, 0, false)
    const cooldowns: Array<number> = []
    for (let i = 0; i < 7; i++) {
      state = onProbeFailure(onProbeStart(state), 10_000)
      cooldowns.push(state.cooldownMillis)
      assert.strictEqual(state.openUntil, 10_000 + state.cooldownMillis)
    }
    assert.deepStrictEqual(cooldowns, [2_000, 4_000, 8_000, 16_000, BREAKER_MAX_COOLDOWN_MILLIS, 30_000, 30_000])
  })

  it("a passing probe closes it, but until an upload succeeds the next opening lasts twice as long", () => {
    const open = onFailure(closedBreaker(settings), settings, 0, false)
    const probed = onProbeSuccess(onProbeStart(open))
    assert.strictEqual(probed.status, "closed")
    const reopened = onFailure(probed, settings, 5_000, false)
    assert.deepStrictEqual([reopened.cooldownMillis, reopened.openUntil], [2_000, 7_000])
    const again = onFailure(onProbeSuccess(onProbeStart(reopened)), settings, 10_000, false)
    assert.strictEqual(again.cooldownMillis, 4_000)
    assert.strictEqual(onFailure(onSuccess(settings), settings, 0, false).cooldownMillis, 1_000, "an upload resets it")
  })

  it("a probe's outcome is dropped once an upload settled the breaker first", () => {
    const closed = onSuccess(settings)
    assert.deepStrictEqual(onProbeSuccess(closed), closed)
    assert.deepStrictEqual(onProbeFailure(closed, 0), closed)
  })
})
