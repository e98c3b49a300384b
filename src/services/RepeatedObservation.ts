/**
 * The same value observed `count` times in a prom-client histogram without labels: every payload
 * of a request is delivered at once, so the delivery histogram (one observation per payload)
 * sees each request's delay once per payload.
 *
 * prom-client has no weighted observe, and its `observe` resolves labels, validates and hashes on
 * every call: about 1 µs, 4–5 % of a core at 50 k payloads/s (BENCHMARKS.md). So the first
 * observation goes through `observe`, which creates and checks the series, and the others are
 * added to the series prom-client keeps for it, exactly as `observe` adds them (one `sum +=` each,
 * so even the float rounding matches). When that series does not have the shape of prom-client
 * 15 (the version the lockfile pins), every observation goes through `observe`;
 * `RepeatedObservation.test.ts` compares the exposition with plain `observe` calls.
 */
import type { Histogram } from "prom-client"

/** prom-client 15's state for one series of a histogram (lib/histogram.js). */
interface Series {
  sum: number
  count: number
  readonly bucketValues: Record<number, number>
}

interface Internals {
  readonly hashMap?: Record<string, Series | undefined>
  readonly upperBounds?: ReadonlyArray<number>
}

const isSeries = (series: Series | undefined): series is Series =>
  series !== undefined && typeof series.sum === "number" && typeof series.count === "number" &&
  typeof series.bucketValues === "object" && series.bucketValues !== null

/** `observe(value, count)`: `count` observations of `value` in the label-less `histogram`. */
export const repeatedObservation = (histogram: Histogram) => {
  const internals = histogram as unknown as Internals
  return (value: number, count: number): void => {
    if (count <= 0) return
    histogram.observe(value)
    const series = internals.hashMap?.[""]
    const bounds = internals.upperBounds
    if (!isSeries(series) || bounds === undefined) {
      for (let k = 1; k < count; k++) histogram.observe(value)
      return
    }
    const rest = count - 1
    series.count += rest
    for (let k = 0; k < rest; k++) series.sum += value
    for (const bound of bounds) {
      if (value <= bound) {
        if (typeof series.bucketValues[bound] === "number") series.bucketValues[bound] += rest
        break
      }
    }
  }
}
