/**
 * Where batches land. Implementations: S3 and the embedded local store (src/layers), and
 * test stores (test/support). `put` must be interruptible down to the I/O: the Uploader's
 * deadline interrupts it, and an implementation over a Promise API passes the AbortSignal of
 * `Effect.tryPromise` on, so a timed-out PUT cannot land later.
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import type * as Effect from "effect/Effect"

export class StoreError extends Data.TaggedError("StoreError")<{
  /** Worth another attempt (timeouts, connection errors, 5xx, 429, throttling). */
  readonly retryable: boolean
  /** A short description for logs; never contains payload data. */
  readonly reason: string
}> {}

export interface ObjectStoreShape {
  /**
   * Writes one object; writing the same key with the same bytes again is harmless. `body` is
   * lent for the batch: once the batch is stored or dead-lettered its memory holds the next
   * batch, so an implementation that keeps the bytes beyond its effect copies them.
   */
  readonly put: (key: string, body: Uint8Array) => Effect.Effect<void, StoreError>
}

export class ObjectStore extends Context.Tag("s3-ingest/ObjectStore")<ObjectStore, ObjectStoreShape>() {}

/**
 * Where batches that could not be stored are kept for `replay`: one file per batch, named
 * after the file name of its key.
 */
export interface DeadLetterShape {
  readonly write: (key: string, body: Uint8Array) => Effect.Effect<void, StoreError>
}

export class DeadLetter extends Context.Tag("s3-ingest/DeadLetter")<DeadLetter, DeadLetterShape>() {}
