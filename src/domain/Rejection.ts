/**
 * Why a request was refused: the HTTP status of the contract and the metric label.
 */
export type RejectionReason =
  | "invalid_json"
  | "invalid_shape"
  | "unsupported_media_type"
  | "unsupported_encoding"
  | "too_large"
  | "too_many_payloads"
  | "unauthorized"
  | "timeout"
  | "method_not_allowed"
  | "not_found"
  | "queue_full"
  | "shedding"
  | "draining"

export const rejectionReasons: ReadonlyArray<RejectionReason> = [
  "invalid_json",
  "invalid_shape",
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
  "draining"
]

export const rejectionStatus: Readonly<Record<RejectionReason, number>> = {
  invalid_json: 400,
  invalid_shape: 400,
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
  draining: 503
}

export interface Rejection {
  readonly reason: RejectionReason
  /** A short reason for the error body; never echoes the request. */
  readonly message: string
}
