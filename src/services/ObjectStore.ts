/**
 * Where batches land. Implementations: S3 and the embedded local store (src/layers), and
 * test stores (test/support). `put` must be interruptible down to the I/O: the Uploader's
 * deadline interrupts it, and an implementation over a Promise API passes the AbortSignal of
 * `Effect.tryPromise` on, so a deadline closes the socket rather than leave the request running.
 * A store may still apply a PUT it had fully received before the socket closed; a batch keeps
 * its key and bytes, so such a late write is identical to the one a retry or replay makes.
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import type * as Effect from "effect/Effect"

interface StoreFailure {
  /** A short description for logs; never contains payload data. */
  readonly reason: string
  /** The store's error code (`SlowDown`, `NoSuchBucket`) or the system's (`ECONNRESET`, `EACCES`). */
  readonly code?: string | undefined
  /** The HTTP status the store answered with, when it answered. */
  readonly status?: number | undefined
  /** What the store's client threw, when it threw. */
  readonly cause?: unknown
}

/** Another attempt may succeed: a timeout, a connection error, HTTP 5xx or 429, throttling. */
export class RetryableStoreError extends Data.TaggedError("RetryableStoreError")<StoreFailure> {}

/** Another attempt would fail the same way: 403, 404 NoSuchBucket, other 4xx, a permission. */
export class PermanentStoreError extends Data.TaggedError("PermanentStoreError")<StoreFailure> {}

export type StoreError = RetryableStoreError | PermanentStoreError

/** The variant that says whether a retry can help. */
export const storeError = (failure: StoreFailure & { readonly retryable: boolean }): StoreError => {
  const { retryable, ...fields } = failure
  return retryable ? new RetryableStoreError(fields) : new PermanentStoreError(fields)
}

export const isRetryable = (error: StoreError): boolean => error._tag === "RetryableStoreError"

export const isStoreError = (u: unknown): u is StoreError =>
  u instanceof RetryableStoreError || u instanceof PermanentStoreError

/** The fields of a StoreError a log line carries. */
export const storeErrorFields = (error: StoreError): Record<string, string | number | boolean> => ({
  reason: error.reason,
  retryable: isRetryable(error),
  ...(error.code === undefined ? {} : { code: error.code }),
  ...(error.status === undefined ? {} : { status: error.status })
})

export interface ObjectStoreShape {
  /**
   * Writes one object; writing the same key with the same bytes again is harmless. `body` is
   * lent for the batch: once the batch is stored or dead-lettered its memory holds the next
   * batch, so an implementation that keeps the bytes beyond its effect copies them.
   */
  readonly put: (key: string, body: Uint8Array) => Effect.Effect<void, StoreError>
  /**
   * A cheap check that the store answers and its target is there (S3: HEAD of the bucket; the
   * local store: its directory is writable). The breaker's probe, so that a store that came
   * back is noticed without a batch to try.
   */
  readonly check: Effect.Effect<void, StoreError>
}

export class ObjectStore extends Context.Tag("s3-ingest/ObjectStore")<ObjectStore, ObjectStoreShape>() {}

/**
 * Where batches that could not be stored are kept for `replay`: one file per batch holding the
 * object's exact bytes, at a path the key can be rebuilt from.
 */
export interface DeadLetterShape {
  readonly write: (key: string, body: Uint8Array) => Effect.Effect<void, StoreError>
  /** A dead-letter file for `key` exists (recovery settles such a batch instead of uploading it). */
  readonly exists: (key: string) => Effect.Effect<boolean>
}

export class DeadLetter extends Context.Tag("s3-ingest/DeadLetter")<DeadLetter, DeadLetterShape>() {}
