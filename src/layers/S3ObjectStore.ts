/**
 * The S3 store (`STORAGE=s3`, any S3-compatible endpoint). The SDK is loaded with a dynamic
 * import when this layer is built, so the embedded store never pays for it at start-up.
 * The client is a scoped resource (destroyed with the layer); SDK retries are off because the
 * Uploader owns timeouts and retries; every request takes the AbortSignal of its attempt, so a
 * deadline or an interruption closes the socket instead of leaving the request running. (A store
 * that had received the whole PUT may still apply it: the batch's fixed key and bytes make that
 * harmless, but a batch counted as dead-lettered can then be in the bucket too.)
 */
import { Agent as HttpAgent } from "node:http"
import { Agent as HttpsAgent } from "node:https"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { contentEncodingOf } from "../domain/Codec.js"
import { isRetryableFailure } from "../domain/StoreFailure.js"
import { AppConfig, type Settings } from "../services/AppConfig.js"
import { ObjectStore, type ObjectStoreShape, storeError, type StoreError, storeErrorFields } from "../services/ObjectStore.js"

interface SdkFailure {
  readonly name?: string
  readonly code?: string
  readonly message?: string
  readonly $metadata?: { readonly httpStatusCode?: number }
}

/** Maps whatever the SDK threw to a StoreError: retryable or permanent, with a short reason. */
export const classifyS3Failure = (cause: unknown): StoreError => {
  const failure: SdkFailure = typeof cause === "object" && cause !== null ? cause : {}
  const httpStatus = failure.$metadata?.httpStatusCode
  const retryable = isRetryableFailure({
    httpStatus,
    code: failure.name,
    systemCode: failure.code,
    message: failure.message
  })
  const status = httpStatus === undefined ? "" : ` (HTTP ${httpStatus})`
  return storeError({
    retryable,
    reason: `${failure.name ?? "Error"}${status}: ${failure.message ?? String(cause)}`,
    // A system error (ECONNREFUSED) says more than the generic name the SDK gives it.
    code: failure.code ?? failure.name,
    status: httpStatus,
    cause
  })
}

export type S3Settings = Pick<
  Settings,
  | "s3Bucket"
  | "s3Region"
  | "s3Endpoint"
  | "s3ForcePathStyle"
  | "s3Checksum"
  | "s3Sse"
  | "s3SseKmsKeyId"
  | "s3StorageClass"
  | "s3ObjectTags"
  | "maxWorkers"
  | "uploadTimeoutMs"
>

export const makeS3ObjectStore = (settings: S3Settings) =>
  Effect.gen(function*() {
    // The SDK warns on every start under Node 20; the operator cannot act on it at run time.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true"
    const { HeadBucketCommand, PutObjectCommand, S3Client } = yield* Effect.promise(() => import("@aws-sdk/client-s3"))
    const bucket = settings.s3Bucket ?? ""
    // What every PUT carries besides its body; unset settings add nothing.
    const objectSettings = {
      ...(settings.s3Sse === undefined ? {} : { ServerSideEncryption: settings.s3Sse }),
      ...(settings.s3SseKmsKeyId === undefined ? {} : { SSEKMSKeyId: settings.s3SseKmsKeyId }),
      ...(settings.s3StorageClass === undefined ? {} : { StorageClass: settings.s3StorageClass }),
      ...(settings.s3ObjectTags === undefined ? {} : { Tagging: settings.s3ObjectTags })
    }
    // Keep-alive sockets for every worker, plus headroom for a retry racing a closing socket.
    const agentOptions = { keepAlive: true, maxSockets: settings.maxWorkers + 4 }
    const client = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new S3Client({
          region: settings.s3Region,
          ...(settings.s3Endpoint === undefined ? {} : { endpoint: settings.s3Endpoint }),
          forcePathStyle: settings.s3ForcePathStyle,
          maxAttempts: 1,
          requestChecksumCalculation: settings.s3Checksum,
          responseChecksumValidation: "WHEN_REQUIRED",
          requestHandler: {
            httpAgent: new HttpAgent(agentOptions),
            httpsAgent: new HttpsAgent(agentOptions),
            connectionTimeout: Math.min(5_000, settings.uploadTimeoutMs)
          }
        })
      ),
      (c) => Effect.sync(() => c.destroy())
    )
    return ObjectStore.of({
      put: (key, body) =>
        Effect.tryPromise({
          try: (signal) =>
            client.send(
              new PutObjectCommand({
                Bucket: bucket,
                Key: key,
                Body: body,
                ContentLength: body.byteLength,
                ContentType: "application/x-ndjson",
                ...(contentEncodingOf(key) === undefined ? {} : { ContentEncoding: "gzip" }),
                ...objectSettings
              }),
              { abortSignal: signal }
            ),
          catch: classifyS3Failure
        }).pipe(Effect.asVoid),
      check: Effect.tryPromise({
        try: (signal) => client.send(new HeadBucketCommand({ Bucket: bucket }), { abortSignal: signal }),
        catch: classifyS3Failure
      }).pipe(Effect.asVoid)
    })
  })

/**
 * One check of the bucket at start, logged: a wrong bucket, endpoint or credentials shows in the
 * first second rather than at the first upload. It does not hold readiness back: the queue
 * absorbs an outage, and the breaker takes over once uploads fail.
 */
const logStoreCheck = (store: ObjectStoreShape, settings: S3Settings) =>
  store.check.pipe(
    Effect.timeoutFail({
      duration: Duration.millis(settings.uploadTimeoutMs),
      onTimeout: () =>
        storeError({ retryable: true, reason: `no answer within ${settings.uploadTimeoutMs} ms`, code: "Timeout" })
    }),
    Effect.either,
    Effect.flatMap((result) =>
      result._tag === "Right"
        ? Effect.logInfo("store check ok")
        : Effect.logWarning("store check failed").pipe(Effect.annotateLogs(storeErrorFields(result.left)))
    ),
    Effect.annotateLogs({
      bucket: settings.s3Bucket ?? "",
      ...(settings.s3Endpoint === undefined ? {} : { endpoint: settings.s3Endpoint })
    })
  )

export const S3ObjectStoreLive: Layer.Layer<ObjectStore, never, AppConfig> = Layer.scoped(
  ObjectStore,
  Effect.gen(function*() {
    const settings = yield* AppConfig
    const store = yield* makeS3ObjectStore(settings)
    // Layers are built uninterruptibly and a fork inherits that: the check must stay stoppable.
    yield* Effect.forkScoped(Effect.interruptible(logStoreCheck(store, settings)))
    return store
  })
)
