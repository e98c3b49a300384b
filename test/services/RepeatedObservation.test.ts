import { assert, describe, it } from "@effect/vitest"
import * as Prometheus from "prom-client"
import { repeatedObservation } from "../../src/services/RepeatedObservation.js"

const BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]

const histogram = () => {
  const registry = new Prometheus.Registry()
  const metric = new Prometheus.Histogram({ name: "delivery_seconds", help: "h", buckets: BUCKETS, registers: [registry] })
  return { registry, metric }
}

// Values on bucket bounds, between them, past the last one, zero, and ones whose repeated sums
// round differently from a product (0.1 × 10 is 1, ten additions of 0.1 are not).
const observations: ReadonlyArray<readonly [number, number]> = [
  [0.05, 3],
  [0.1, 10],
  [0.003, 1],
  [0.7, 7],
  [120, 2],
  [500, 4],
  [0, 5],
  [0.30000000000000004, 9],
  [2.5, 1],
  [0.2, 0]
]

describe("repeatedObservation", () => {
  it("exposes exactly what as many calls of observe expose", async () => {
    const plain = histogram()
    const repeated = histogram()
    const observe = repeatedObservation(repeated.metric)
    for (const [value, count] of observations) {
      for (let k = 0; k < count; k++) plain.metric.observe(value)
      observe(value, count)
    }
    const expected = await plain.registry.metrics()
    assert.strictEqual(await repeated.registry.metrics(), expected)
    assert.match(expected, /delivery_seconds_count 42$/m)
    assert.match(expected, /delivery_seconds_bucket\{le="0.05"\} 9$/m, "zeros, 0.003 and three at the bound")
    assert.match(expected, /delivery_seconds_bucket\{le="120"\} 38$/m, "the four past the last bound only in +Inf")
  })

  it("counts from the first observation of a fresh histogram, and after a reset", async () => {
    const plain = histogram()
    const repeated = histogram()
    const observe = repeatedObservation(repeated.metric)
    observe(0.02, 6)
    for (let k = 0; k < 6; k++) plain.metric.observe(0.02)
    assert.strictEqual(await repeated.registry.metrics(), await plain.registry.metrics())
    repeated.metric.reset()
    plain.metric.reset()
    observe(3, 4)
    for (let k = 0; k < 4; k++) plain.metric.observe(3)
    assert.strictEqual(await repeated.registry.metrics(), await plain.registry.metrics())
  })

  it("observes every time when the histogram does not keep its series the way prom-client 15 does", () => {
    const seen: Array<number> = []
    const other = { observe: (value: number) => seen.push(value) } as unknown as Prometheus.Histogram
    repeatedObservation(other)(0.5, 3)
    assert.deepStrictEqual(seen, [0.5, 0.5, 0.5])
  })
})
