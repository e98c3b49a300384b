/**
 * The HTTP edge: a scoped Layer that serves the `node:http` listener.
 *
 * The request path runs no fiber: headers are checked, the body read with Node's own events,
 * and the collection admitted through `Ingest.admit`, whose answer is sent at once or, with the
 * journal, when the fsync covering it completes. Only rare paths (the
 * metrics scrape, a refusal logged at debug, an unexpected exception) run an Effect, on a fiber
 * of a FiberSet in the layer's scope. The layer's finalizer conducts the graceful shutdown:
 * readiness off, intake kept for `SHUTDOWN_DELAY_MS`, then 503 + `Connection: close` while the
 * queue drains, then the listener closes.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as LogLevel from "effect/LogLevel"
import * as Schedule from "effect/Schedule"
import { type Rejection, type RejectionReason, rejectionStatus } from "../domain/Rejection.js"
import { inflate, wholeBody } from "../domain/RequestBody.js"
import {
  type AckLevel,
  ackLevel,
  bearerToken,
  contentEncoding,
  type Encoding,
  isJsonContentType,
  JSON_TYPE
} from "../domain/RequestHeaders.js"
import { AppConfig } from "../services/AppConfig.js"
import { type AdmitResult, Ingest } from "../services/intake/Ingest.js"
import { JobQueue } from "../services/JobQueue.js"
import { Metrics } from "../services/Metrics.js"
import { Shutdown } from "../services/Shutdown.js"
import { version } from "../services/Version.js"
import { answerClientError } from "./ClientErrors.js"
import { HttpListener } from "./HttpListener.js"

const INGEST_PATH = "/v1/payloads"
const IDLE_SWEEP = Duration.millis(100)
/** How often a drain reports its progress. */
const DRAIN_PROGRESS_EVERY = Duration.seconds(1)
/**
 * While draining, a connection with no request in progress for this long is closed. Node's
 * `closeIdleConnections()` also closes a connection whose request bytes have arrived but are not
 * parsed yet (a fresh connection, or a keep-alive client sending right then): that request would
 * get a reset instead of an answer. Waiting for real idleness leaves only clients that send after
 * half a second of silence exactly as the socket closes: the keep-alive race every server has.
 */
const IDLE_CUTOFF_MILLIS = 500

const make = Effect.gen(function*() {
  const config = yield* AppConfig
  const ingest = yield* Ingest
  const queue = yield* JobQueue
  const metrics = yield* Metrics
  const shutdown = yield* Shutdown
  const listener = yield* HttpListener
  const { markIdle } = listener
  // The rare paths' fibers belong to this layer's scope: closing the edge interrupts any left.
  const runFork = yield* FiberSet.makeRuntime<never>()
  // Decided once: at other levels a refused request costs no Effect at all.
  const logRefusals = LogLevel.lessThanEqual(yield* FiberRef.get(FiberRef.currentMinimumLogLevel), LogLevel.Debug)
  /** A refused request at debug level: the status and why, never the body, token or path. */
  const logRefusal = (status: number, reason: string, error: string) =>
    runFork(Effect.logDebug("request refused").pipe(Effect.annotateLogs({ status, reason, error })))

  const send = (
    res: ServerResponse,
    status: number,
    body: string,
    headers?: Record<string, string>,
    bytes = Buffer.byteLength(body)
  ) => {
    if (res.headersSent || res.destroyed) return
    // No object spread here: with `{ ...headers }` the stall suite's flood of 503s grew V8's old
    // generation by ~3.5 MB/s (20–40 MB of peak RSS); built this way it stays flat.
    const all: Record<string, string> = { "content-type": JSON_TYPE, "content-length": String(bytes) }
    if (headers !== undefined) Object.assign(all, headers)
    if (!shutdown.intakeOpen()) all.connection = "close"
    res.writeHead(status, all)
    res.end(body)
    markIdle(res)
  }

  const reject = (res: ServerResponse, rejection: Rejection, headers?: Record<string, string>) => {
    const status = rejectionStatus[rejection.reason]
    metrics.rejected(rejection.reason)
    if (logRefusals) logRefusal(status, rejection.reason, rejection.message)
    send(res, status, JSON.stringify({ error: rejection.message }), headers)
  }

  const refuse = (res: ServerResponse, reason: RejectionReason, message: string, headers?: Record<string, string>) =>
    reject(res, { reason, message }, headers)
  const retryAfter = (seconds: number) => ({ "retry-after": String(seconds) })

  const admitBody = (res: ServerResponse, body: Buffer, encoding: Encoding, ack: AckLevel) => {
    const bytes = encoding === "gzip" ? inflate(body, config.maxBodyBytes) : body
    if (bytes === "too_large") {
      return refuse(res, "too_large", `inflated body larger than ${config.maxBodyBytes} bytes`, { connection: "close" })
    }
    if (bytes === "malformed") return refuse(res, "invalid_json", "malformed gzip body")
    const result = ingest.admit(bytes, Date.now(), ack === "stored" ? (n, keys) => receipt(res, n, keys) : undefined)
    if (result._tag === "Pending") result.onAnswer = (later) => answer(res, later)
    else answer(res, result)
  }

  /** 200 with the keys holding every payload, or 202 when the receipt could not be given. */
  const receipt = (res: ServerResponse, count: number, keys: ReadonlyArray<string> | undefined) => {
    if (keys === undefined) return accepted(res, count)
    send(res, 200, JSON.stringify({ accepted: count, stored: count, keys }))
  }

  const accepted = (res: ServerResponse, count: number) => {
    const body = `{"accepted":${count}}`
    send(res, 202, body, undefined, body.length) // ASCII: its length is its byte length
  }

  const answer = (res: ServerResponse, result: AdmitResult) => {
    if (result._tag === "Rejected") {
      return reject(res, result.rejection, result.retryAfter === undefined ? undefined : retryAfter(result.retryAfter))
    }
    const waiting = result.receipt
    if (waiting === undefined) return accepted(res, result.count)
    // A client gone while it waits costs nothing further: the receipt lets go of its response.
    res.once("close", () => void (waiting.answer = undefined))
  }
  const ingestRoute = (req: IncomingMessage, res: ServerResponse, expectsContinue: boolean, query: string | undefined) => {
    if (req.method !== "POST") return refuse(res, "method_not_allowed", "method not allowed", { allow: "POST" })
    const ack = ackLevel(query)
    if (ack === undefined) return refuse(res, "invalid_query", "ack must be accepted or stored")
    if (!shutdown.intakeOpen()) {
      // `send` adds `Connection: close` while intake is closed.
      return refuse(res, "draining", "shutting down", retryAfter(queue.retryAfterSeconds()))
    }
    if (!isJsonContentType(req.headers["content-type"])) {
      return refuse(res, "unsupported_media_type", "content-type must be application/json")
    }
    const encoding = contentEncoding(req.headers["content-encoding"])
    if (encoding === undefined) return refuse(res, "unsupported_encoding", "content-encoding must be identity or gzip")
    const declared = req.headers["content-length"]
    if (declared !== undefined && Number(declared) > config.maxBodyBytes) {
      return refuse(res, "too_large", `body larger than ${config.maxBodyBytes} bytes`)
    }
    const authorization = req.headers.authorization
    if (ingest.authRequired && authorization !== undefined) {
      const token = bearerToken(authorization)
      if (token === undefined || !ingest.tokenAllowed(token)) return refuse(res, "unauthorized", "token not allowed")
    }
    if (expectsContinue) res.writeContinue()

    const chunks: Array<Buffer> = []
    let size = 0
    let done = false
    req.on("data", (chunk: Buffer) => {
      if (done) return
      size += chunk.length
      if (size > config.maxBodyBytes) {
        done = true
        chunks.length = 0
        return refuse(res, "too_large", `body larger than ${config.maxBodyBytes} bytes`, { connection: "close" })
      }
      chunks.push(chunk)
    })
    // No "error" listener: an aborted request emits none without one, and neither "data" nor "end".
    req.on("end", () => {
      if (done) return
      done = true
      admitBody(res, wholeBody(chunks, size), encoding, ack)
    })
  }

  const renderMetrics = (res: ServerResponse) =>
    runFork(
      metrics.render.pipe(
        Effect.match({
          onFailure: () => send(res, 500, JSON.stringify({ error: "metrics unavailable" })),
          onSuccess: (text) => {
            res.writeHead(200, { "content-type": metrics.contentType, "content-length": String(Buffer.byteLength(text)) })
            res.end(text)
            markIdle(res)
          }
        })
      )
    )

  const probe = (req: IncomingMessage, res: ServerResponse, answer: () => void) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return refuse(res, "method_not_allowed", "method not allowed", { allow: "GET, HEAD" })
    }
    answer()
  }

  const route = (req: IncomingMessage, res: ServerResponse, expectsContinue: boolean) => {
    const url = req.url ?? "/"
    const query = url.indexOf("?")
    const path = query < 0 ? url : url.slice(0, query)
    switch (path) {
      case INGEST_PATH:
        return ingestRoute(req, res, expectsContinue, query < 0 ? undefined : url.slice(query + 1))
      case "/healthz":
        return probe(req, res, () => send(res, 200, `{"status":"ok"}`))
      case "/readyz":
        return probe(req, res, () =>
          shutdown.ready() && !queue.storeDown() && !queue.journalFailing()
            ? send(res, 200, `{"status":"ready"}`)
            : send(res, 503, `{"status":"not ready"}`, retryAfter(queue.retryAfterSeconds())))
      case "/metrics":
        return probe(req, res, () => renderMetrics(res))
      default:
        return refuse(res, "not_found", "not found")
    }
  }

  const guarded = (expectsContinue: boolean) => (req: IncomingMessage, res: ServerResponse) => {
    listener.markBusy(req)
    try {
      route(req, res, expectsContinue)
    } catch (error) {
      runFork(Effect.logError("request handler failed", error))
      send(res, 500, `{"error":"internal error"}`)
    }
  }

  const server = listener.server
  // Answer `Expect: 100-continue` only after the header checks passed, so a refused client
  // never sends its body.
  listener.serve(guarded(false), guarded(true))

  // Node's own parser errors (malformed requests, header overflow, request timeouts).
  server.on("clientError", answerClientError((status, reason, message) => {
    if (status === 408) metrics.rejected("timeout")
    if (logRefusals) logRefusal(status, reason, message)
  }))

  const drain = Effect.gen(function*() {
    const started = yield* Clock.currentTimeMillis
    const drainUntil = yield* shutdown.drainUntil
    yield* Effect.logInfo("draining").pipe(Effect.annotateLogs({ ...queue.stats(), delayMs: config.shutdownDelayMs }))
    if (config.shutdownDelayMs > 0) {
      yield* Effect.sleep(Duration.millis(Math.max(0, Math.min(config.shutdownDelayMs, drainUntil - started))))
    }
    yield* shutdown.closeIntake
    // Finalizers run uninterruptibly and a fork inherits that: mark the sweeper interruptible.
    const sweeper = yield* Effect.fork(
      Effect.interruptible(
        Effect.sync(() => listener.closeIdle(IDLE_CUTOFF_MILLIS)).pipe(Effect.repeat(Schedule.spaced(IDLE_SWEEP)))
      )
    )
    // About once a second, so a long drain (a store that is slow, or down behind an open
    // breaker) is never silent.
    const progress = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.logInfo("drain progress").pipe(
        Effect.annotateLogs({ ...queue.stats(), breaker: queue.breakerStatus(), budgetLeftMs: drainUntil - now })
      ))
    const reporter = yield* Effect.fork(
      Effect.interruptible(Effect.sleep(DRAIN_PROGRESS_EVERY).pipe(
        Effect.zipRight(Effect.repeat(progress, Schedule.spaced(DRAIN_PROGRESS_EVERY)))
      ))
    )
    const drained = yield* queue.awaitIdle(drainUntil)
    yield* Fiber.interrupt(reporter)
    yield* Effect.logInfo(drained ? "queue drained" : "drain budget spent").pipe(Effect.annotateLogs({ ...queue.stats() }))
    // Requests still waiting for a receipt are answered 202 while their connections are open.
    queue.answerReceipts()
    yield* listener.close
    yield* Fiber.interrupt(sweeper)
    yield* Effect.logInfo("listener closed")
  })

  yield* Effect.addFinalizer(() => drain)
  yield* Effect.logInfo("listening").pipe(
    Effect.annotateLogs({
      version,
      host: config.host,
      port: listener.port,
      storage: config.storage,
      ...(config.storage === "s3" ? { bucket: config.s3Bucket } : {}),
      prefix: config.s3Prefix,
      dataDir: config.dataDir,
      workers: config.maxWorkers,
      batchMaxItems: config.batchMaxItems,
      batchMaxBytes: config.batchMaxBytes,
      batchMaxWaitMs: config.batchMaxWaitMs
    })
  )
})

export const IngestServerLive: Layer.Layer<
  never,
  never,
  AppConfig | Ingest | JobQueue | Metrics | Shutdown | HttpListener
> = Layer.scopedDiscard(make)
