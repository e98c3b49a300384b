/**
 * Why a request was refused: the HTTP status of the contract and the metric label.
 */
/** The status of each reason; the reasons are the labels of `s3ingest_requests_rejected_total`. */
export const rejectionStatus = {
  invalid_json: 400,
  invalid_shape: 400,
  invalid_query: 400,
  unsupported_media_type: 415,
  unsupported_encoding: 415,
  too_large: 413,
  too_many_payloads: 413,
  unauthorized: 401,
  timeout: 408,
  method_not_allowed: 405,
  not_found: 404,
  queue_full: 503,
  shedding: 503,
  draining: 503,
  journal_unavailable: 503
} as const satisfies Readonly<Record<string, number>>

export type RejectionReason = keyof typeof rejectionStatus

export const rejectionReasons = Object.keys(rejectionStatus) as ReadonlyArray<RejectionReason>

export interface Rejection {
  readonly reason: RejectionReason
  /** A short reason for the error body; never echoes the request. */
  readonly message: string
}
