/**
 * Retry waits: exponential backoff with full jitter, base 100 ms, factor 2, each
 * wait capped at 5 s.
 */
import { assert, describe, it } from "@effect/vitest"
import {
  BACKOFF_BASE_MILLIS,
  BACKOFF_CAP_MILLIS,
  backoffCeilingMillis,
  backoffMillis
} from "../../src/domain/Backoff.js"

describe("backoffCeilingMillis", () => {
  it("doubles from 100 ms and is capped at 5 s", () => {
    assert.strictEqual(BACKOFF_BASE_MILLIS, 100)
    assert.strictEqual(BACKOFF_CAP_MILLIS, 5_000)
    const ceilings = Array.from({ length: 10 }, (_, i) => backoffCeilingMillis(i + 1))
    assert.deepStrictEqual(ceilings, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000])
  })

  it("stays at the cap for large retry numbers", () => {
    for (const retry of [20, 64, 1000, 1e6]) assert.strictEqual(backoffCeilingMillis(retry), 5_000)
  })
})

describe("backoffMillis", () => {
  it("is 0 for a random number of 0", () => {
    for (let retry = 1; retry <= 12; retry++) assert.strictEqual(backoffMillis(retry, 0), 0)
  })

  it("stays below its ceiling for a random number just under 1", () => {
    for (let retry = 1; retry <= 12; retry++) {
      const ceiling = backoffCeilingMillis(retry)
      const wait = backoffMillis(retry, 0.999)
      assert.isTrue(Number.isInteger(wait))
      assert.isBelow(wait, ceiling)
      assert.isAtLeast(wait, Math.floor(ceiling * 0.99))
    }
    assert.strictEqual(backoffMillis(1, 0.999), 99)
    assert.strictEqual(backoffMillis(7, 0.999), 4995)
  })

  it("spreads waits over the whole window (full jitter)", () => {
    assert.strictEqual(backoffMillis(3, 0.5), 200)
    assert.strictEqual(backoffMillis(3, 0.25), 100)
    assert.strictEqual(backoffMillis(8, 0.5), 2500)
  })
})
