/**
 * The external contract as the end-to-end tests read it, written out from the contract rather than
 * imported from src: a test that took these from the implementation could not catch a drift.
 */

/** `s3ingest_requests_rejected_total` reason labels. */
export const REJECTION_REASONS = [
  "invalid_json",
  "invalid_shape",
  "invalid_query",
  "unsupported_media_type",
  "unsupported_encoding",
  "too_large",
  "too_many_payloads",
  "unauthorized",
  "timeout",
  "method_not_allowed",
  "not_found",
  "queue_full",
  "shedding",
  "draining",
  "journal_unavailable"
] as const

export type RejectionReason = (typeof REJECTION_REASONS)[number]
