/**
 * The store's drain rate, for the `Retry-After` a refused client gets: payloads stored per
 * second, smoothed over whole seconds.
 */

export interface DrainRate {
  /** `count` payloads stored at `now` (epoch millis). */
  readonly record: (count: number, now: number) => void
  /** Seconds a refused client should wait for `depth` payloads ahead of it to drain, 1–60. */
  readonly retryAfterSeconds: (depth: number) => number
}

export const makeDrainRate = (): DrainRate => {
  let second = 0
  let storedThisSecond = 0
  let perSecond = 0
  return {
    record: (count, now) => {
      const at = Math.floor(now / 1000)
      if (at !== second) {
        const gap = at - second
        perSecond = gap === 1 ? (perSecond + storedThisSecond) / 2 : storedThisSecond / gap
        second = at
        storedThisSecond = 0
      }
      storedThisSecond += count
    },
    retryAfterSeconds: (depth) => {
      if (perSecond <= 0) return depth === 0 ? 1 : 5
      return Math.min(60, Math.max(1, Math.ceil(depth / perSecond)))
    }
  }
}
