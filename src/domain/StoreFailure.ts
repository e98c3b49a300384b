/**
 * Which store failures are worth retrying. Retrying a permanent error (403, 404 NoSuchBucket)
 * only burns time and requests; not retrying a transient one dead-letters data needlessly.
 */

const RETRYABLE_CODES = new Set([
  "SlowDown",
  "RequestTimeout",
  "RequestTimeTooSkewed",
  "InternalError",
  "ServiceUnavailable",
  "Throttling",
  "ThrottlingException",
  "ThrottledException",
  "RequestThrottled",
  "RequestLimitExceeded",
  "TooManyRequestsException",
  "TimeoutError",
  "AbortError"
])

const RETRYABLE_SYSTEM_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ERR_SOCKET_CONNECTION_TIMEOUT"
])

export interface FailureFacts {
  readonly httpStatus?: number | undefined
  /** S3 error code (`SlowDown`) or error name. */
  readonly code?: string | undefined
  /** Node system error code (`ECONNRESET`). */
  readonly systemCode?: string | undefined
  readonly message?: string | undefined
}

export const isRetryableFailure = (facts: FailureFacts): boolean => {
  if (facts.code !== undefined && RETRYABLE_CODES.has(facts.code)) return true
  if (facts.systemCode !== undefined && RETRYABLE_SYSTEM_CODES.has(facts.systemCode)) return true
  if (facts.httpStatus !== undefined) return facts.httpStatus >= 500 || facts.httpStatus === 429
  // No HTTP answer at all: the request never completed (socket hang up and the like).
  return facts.message !== undefined && /socket hang up|ECONNRESET|EPIPE|network/i.test(facts.message)
}
