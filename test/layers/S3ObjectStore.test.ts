/**
 * The S3 store against a real S3-compatible server (s3rver on loopback, started by the global
 * setup), a loopback "S3" that never answers, and a port where nothing listens.
 */
import { describe, expect, it } from "@effect/vitest"
import { randomUUID } from "node:crypto"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import { afterAll, beforeAll, inject } from "vitest"
import { classifyS3Failure, makeS3ObjectStore, type S3Settings } from "../../src/layers/S3ObjectStore.js"
import { Metrics } from "../../src/services/Metrics.js"
import { isRetryable, isStoreError, type ObjectStoreShape, type StoreError } from "../../src/services/ObjectStore.js"
import { makeUploader } from "../../src/services/delivery/Uploader.js"
import { getObject, type HangingConnection, listKeys, makeTestS3Client, startHangingServer } from "../support/s3.js"
import { freePort } from "../support/service.js"

const s3Endpoint = inject("s3Endpoint")
const s3Bucket = inject("s3Bucket")

/** Everything this file writes lives under one prefix of its own. */
const runPrefix = `s3-object-store-test/${randomUUID()}`

const savedCredentials = {
  id: process.env.AWS_ACCESS_KEY_ID,
  secret: process.env.AWS_SECRET_ACCESS_KEY
}
beforeAll(() => {
  // s3rver's credentials, read by the SDK's default chain when the store builds its client.
  process.env.AWS_ACCESS_KEY_ID = "S3RVER"
  process.env.AWS_SECRET_ACCESS_KEY = "S3RVER"
})
afterAll(() => {
  if (savedCredentials.id === undefined) delete process.env.AWS_ACCESS_KEY_ID
  else process.env.AWS_ACCESS_KEY_ID = savedCredentials.id
  if (savedCredentials.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY
  else process.env.AWS_SECRET_ACCESS_KEY = savedCredentials.secret
})

const settings = (overrides: Partial<S3Settings> = {}): S3Settings => ({
  s3Bucket,
  s3Region: "us-east-1",
  s3Endpoint,
  s3ForcePathStyle: true,
  s3Checksum: "WHEN_REQUIRED",
  s3Sse: undefined,
  s3SseKmsKeyId: undefined,
  s3StorageClass: undefined,
  s3ObjectTags: undefined,
  maxWorkers: 4,
  uploadTimeoutMs: 5000,
  ...overrides
})

const ndjson = (...ids: ReadonlyArray<string>): Uint8Array =>
  new TextEncoder().encode(ids.map((id) => JSON.stringify({ id, note: "héllo ☃", n: [1, 2, 3] }) + "\n").join(""))

/** A verification client with the same settings as the store, destroyed with the test scope. */
const verifier = Effect.acquireRelease(
  Effect.sync(() => makeTestS3Client(s3Endpoint)),
  (client) => Effect.sync(() => client.destroy())
)

/** The loopback S3 that never answers, closed with the test scope. */
const hangingServer = Effect.acquireRelease(
  Effect.promise(startHangingServer),
  (server) => Effect.promise(server.close)
)

/** The StoreError of a failed exit, or a test failure naming what came instead. */
const storeErrorOf = (exit: Exit.Exit<void, StoreError>): StoreError => {
  if (Exit.isSuccess(exit)) throw new Error("expected the put to fail, it succeeded")
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) throw new Error(`expected a StoreError, got ${Cause.pretty(exit.cause)}`)
  expect(isStoreError(failure.value)).toBe(true)
  return failure.value
}

/**
 * Waits (at most `millis`) for the client socket of `connection` to close, and returns when it
 * closed. Fails the test with a clear message when the socket is still open: the cancellation did
 * not reach the socket.
 */
const socketClosed = (connection: HangingConnection, millis: number) =>
  Effect.promise(() => connection.closed).pipe(
    Effect.timeoutFail({
      duration: millis,
      onTimeout: () =>
        new Error(`the client socket was still open ${millis} ms later: the AbortSignal did not reach it`)
    })
  )

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/** The request line the hanging server received: the PUT really went out on that socket. */
const expectPutReached = (connection: HangingConnection, key: string) =>
  Effect.promise(() => connection.firstData).pipe(
    Effect.map((head) => expect(head.split("\r\n")[0]).toMatch(new RegExp(`^PUT /${escapeRegExp(`${s3Bucket}/${key}`)}[? ]`)))
  )

/**
 * The one PUT of a failed attempt reached the hanging server on a single connection, and its
 * socket was closed within a second of the failure: the abort went down to the socket.
 */
const expectSocketClosedAfter = (hanging: Effect.Effect.Success<typeof hangingServer>, key: string, failedAt: number) =>
  Effect.gen(function*() {
    const connection = yield* Effect.promise(() => hanging.firstConnection)
    yield* expectPutReached(connection, key)
    const closedAt = yield* socketClosed(connection, 1_000)
    expect(closedAt - failedAt).toBeLessThan(1_000)
    expect(hanging.connections).toHaveLength(1)
  })

describe("S3ObjectStore against s3rver", () => {
  it.scopedLive("put stores the NDJSON bytes as application/x-ndjson", () =>
    Effect.gen(function*() {
      const store: ObjectStoreShape = yield* makeS3ObjectStore(settings())
      const client = yield* verifier
      const key = `${runPrefix}/put/2024/01/02/03/20240102T030405006Z-0badcafe-00000001.ndjson`
      const body = ndjson("put-1", "put-2", "put-3")

      yield* store.put(key, body)

      const stored = yield* Effect.promise(() => getObject(client, s3Bucket, key))
      expect(Buffer.from(stored.body).equals(Buffer.from(body))).toBe(true)
      expect(stored.contentType).toBe("application/x-ndjson")
    }), 20_000)

  it.scopedLive("re-putting a key with the same bytes succeeds and leaves one identical object", () =>
    Effect.gen(function*() {
      const store = yield* makeS3ObjectStore(settings())
      const client = yield* verifier
      const prefix = `${runPrefix}/replay-${randomUUID()}/`
      const key = `${prefix}2024/01/02/03/20240102T030405006Z-0badcafe-00000002.ndjson`
      const body = ndjson("again-1", "again-2")

      yield* store.put(key, body)
      yield* store.put(key, body)

      expect(yield* Effect.promise(() => listKeys(client, s3Bucket, prefix))).toEqual([key])
      const stored = yield* Effect.promise(() => getObject(client, s3Bucket, key))
      expect(Buffer.from(stored.body).equals(Buffer.from(body))).toBe(true)
      expect(stored.contentType).toBe("application/x-ndjson")
    }), 20_000)

  it.scopedLive("a put to a bucket that does not exist fails permanently (NoSuchBucket)", () =>
    Effect.gen(function*() {
      const store = yield* makeS3ObjectStore(settings({ s3Bucket: `no-such-bucket-${randomUUID().slice(0, 8)}` }))

      const exit = yield* Effect.exit(store.put(`${runPrefix}/nobucket.ndjson`, ndjson("lost")))

      const error = storeErrorOf(exit)
      expect(isRetryable(error)).toBe(false)
      expect(error.reason).toMatch(/NoSuchBucket/)
      expect(error.reason).toMatch(/404/)
    }), 20_000)

  it.scopedLive("a put to a port where nothing listens fails retryably (connection refused)", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(freePort)
      const store = yield* makeS3ObjectStore(settings({ s3Endpoint: `http://127.0.0.1:${port}` }))

      const exit = yield* Effect.exit(store.put(`${runPrefix}/refused.ndjson`, ndjson("refused")))

      const error = storeErrorOf(exit)
      expect(isRetryable(error)).toBe(true)
      expect(error.reason).toMatch(/ECONNREFUSED/)
    }), 20_000)
})

describe("S3ObjectStore against a loopback S3 that never answers", () => {
  it.scopedLive("Effect.timeout fails the put in time and the abort closes the client socket", () =>
    Effect.gen(function*() {
      const hanging = yield* hangingServer
      // uploadTimeoutMs 5000: nothing in the client itself gives up within the test's bounds.
      const store = yield* makeS3ObjectStore(settings({ s3Endpoint: hanging.endpoint }))
      const key = `${runPrefix}/hang/timeout.ndjson`

      const started = Date.now()
      const exit = yield* store.put(key, ndjson("hang")).pipe(Effect.timeout("300 millis"), Effect.exit)
      const failedAt = Date.now()

      expect(Exit.isFailure(exit)).toBe(true)
      const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
      expect(Option.isSome(failure) && Cause.isTimeoutException(failure.value)).toBe(true)
      expect(failedAt - started).toBeGreaterThanOrEqual(250)
      expect(failedAt - started).toBeLessThan(1_000)

      // The store's scope (and so its client and agent) is still open here: only the abort can close it.
      yield* expectSocketClosedAfter(hanging, key, failedAt)
    }), 20_000)

  it.scopedLive("the Uploader's attempt deadline fails retryably, counts a timeout and closes the socket", () =>
    Effect.gen(function*() {
      const hanging = yield* hangingServer
      const store = yield* makeS3ObjectStore(settings({ s3Endpoint: hanging.endpoint }))
      const metrics = yield* Effect.provide(Metrics, Metrics.Default)
      const { upload } = yield* makeUploader(store, metrics, {
        uploadTimeoutMs: 300,
        uploadRetries: 0,
        breakerFailures: 5,
        breakerCooldownMs: 1_000
      })
      const key = `${runPrefix}/hang/uploader.ndjson`

      const started = Date.now()
      const exit = yield* Effect.exit(upload(key, ndjson("hang")))
      const failedAt = Date.now()

      const error = storeErrorOf(exit)
      expect(isRetryable(error)).toBe(true)
      expect(error.reason).toMatch(/timed out/)
      expect(failedAt - started).toBeGreaterThanOrEqual(250)
      expect(failedAt - started).toBeLessThan(1_000)

      const attempts = yield* Effect.promise(async () =>
        (await metrics.registry.getSingleMetric("s3ingest_upload_attempts_total")?.get())?.values ?? []
      )
      const byOutcome = (outcome: string) =>
        attempts.find((value) => value.labels.outcome === outcome)?.value ?? 0
      expect(byOutcome("timeout")).toBe(1)
      expect(byOutcome("ok") + byOutcome("error")).toBe(0)

      // uploadRetries 0: one attempt, one connection.
      yield* expectSocketClosedAfter(hanging, key, failedAt)
    }), 20_000)

  it.scopedLive("interrupting a forked put closes the client socket", () =>
    Effect.gen(function*() {
      const hanging = yield* hangingServer
      const store = yield* makeS3ObjectStore(settings({ s3Endpoint: hanging.endpoint }))
      const key = `${runPrefix}/hang/interrupt.ndjson`

      const fiber = yield* Effect.fork(store.put(key, ndjson("hang")))
      const connection = yield* Effect.promise(() => hanging.firstConnection)
      // The request is on the wire before the interruption.
      yield* expectPutReached(connection, key)
      expect(Option.isNone(yield* Fiber.poll(fiber)), "a store that never answers leaves the put pending").toBe(true)

      const interruptedAt = Date.now()
      const exit = yield* Fiber.interrupt(fiber)
      expect(Exit.isInterrupted(exit)).toBe(true)

      const closedAt = yield* socketClosed(connection, 1_000)
      expect(closedAt - interruptedAt).toBeLessThan(1_000)
    }), 20_000)
})

describe("classifyS3Failure", () => {
  const cases: ReadonlyArray<{ readonly label: string; readonly cause: unknown; readonly retryable: boolean }> = [
    { label: "SlowDown 503", cause: { name: "SlowDown", $metadata: { httpStatusCode: 503 } }, retryable: true },
    { label: "InternalError 500", cause: { name: "InternalError", $metadata: { httpStatusCode: 500 } }, retryable: true },
    { label: "an unnamed 503", cause: { name: "UnknownError", $metadata: { httpStatusCode: 503 } }, retryable: true },
    { label: "429", cause: { name: "TooManyRequests", $metadata: { httpStatusCode: 429 } }, retryable: true },
    { label: "ECONNRESET", cause: { code: "ECONNRESET", message: "read ECONNRESET" }, retryable: true },
    { label: "ECONNRESET without a message", cause: { code: "ECONNRESET" }, retryable: true },
    { label: "AccessDenied 403", cause: { name: "AccessDenied", $metadata: { httpStatusCode: 403 } }, retryable: false },
    { label: "NoSuchBucket 404", cause: { name: "NoSuchBucket", $metadata: { httpStatusCode: 404 } }, retryable: false },
    { label: "another 4xx (400)", cause: { name: "InvalidArgument", $metadata: { httpStatusCode: 400 } }, retryable: false }
  ]
  for (const { cause, label, retryable } of cases) {
    it(`${label} → ${retryable ? "retryable" : "permanent"}`, () => {
      const error = classifyS3Failure(cause)
      expect(error._tag).toBe(retryable ? "RetryableStoreError" : "PermanentStoreError")
      expect(error.cause, "the SDK's error is kept").toBe(cause)
    })
  }

  it("names the S3 code and HTTP status in the reason", () => {
    const error = classifyS3Failure({
      name: "AccessDenied",
      message: "Access Denied",
      $metadata: { httpStatusCode: 403 }
    })
    expect(error.reason).toContain("AccessDenied")
    expect(error.reason).toContain("403")
    expect([error.code, error.status]).toEqual(["AccessDenied", 403])
  })

  it("accepts values that are not objects", () => {
    expect(isStoreError(classifyS3Failure("boom"))).toBe(true)
    expect(isStoreError(classifyS3Failure(undefined))).toBe(true)
  })
})
