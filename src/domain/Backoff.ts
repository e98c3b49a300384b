/**
 * Retry waits: exponential backoff with full jitter (base 100 ms, factor 2, each wait capped
 * at 5 s). Full jitter spreads a fleet's retries over the whole window, so workers that failed
 * together do not retry together.
 */
export const BACKOFF_BASE_MILLIS = 100
export const BACKOFF_CAP_MILLIS = 5_000

/** Upper bound of the wait before retry number `retry` (1-based). */
export const backoffCeilingMillis = (retry: number): number =>
  Math.min(BACKOFF_CAP_MILLIS, BACKOFF_BASE_MILLIS * 2 ** (retry - 1))

/** The wait before retry number `retry`, given a uniform random number in [0, 1). */
export const backoffMillis = (retry: number, random: number): number =>
  Math.floor(random * backoffCeilingMillis(retry))
