/**
 * The listening socket of the HTTP edge, bound before anything else is built: a port that is
 * taken stops the start before DATA_DIR is touched, and until the edge is ready the listener
 * answers on its own (`/healthz` 200, `/readyz` and everything else 503), so a load balancer
 * sees a replica that is starting rather than a refused connection.
 *
 * It also keeps the set of open connections, each marked with since when it has had no request
 * in progress: what a drain may close, and what the close cuts once its grace has passed.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import { Server as NetServer, type Socket } from "node:net"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { AppConfig } from "../services/AppConfig.js"
import { Metrics } from "../services/Metrics.js"

/** The address could not be bound (in use, not permitted, not local). */
export class ListenError extends Data.TaggedError("ListenError")<{
  readonly address: string
  readonly code: string | undefined
  readonly cause: Error
}> {}

const IDLE_SINCE = Symbol("idleSince")
const BUSY = -1
type TrackedSocket = Socket & { [IDLE_SINCE]: number }

type Handler = (req: IncomingMessage, res: ServerResponse) => void

/** How long the close waits for open connections before it cuts them. */
const CLOSE_GRACE = Duration.seconds(1)

export interface HttpListenerShape {
  readonly server: Server
  /** The bound port (the configured one, or the one the system picked for `PORT=0`). */
  readonly port: number
  /** Hands requests to the edge from now on, in place of the start-up answers. */
  readonly serve: (onRequest: Handler, onCheckContinue: Handler) => void
  /** Marks the request's connection busy until `markIdle`. */
  readonly markBusy: (req: IncomingMessage) => void
  readonly markIdle: (res: ServerResponse) => void
  /** Closes the connections that have had no request in progress for `idleMillis`. */
  readonly closeIdle: (idleMillis: number) => void
  /**
   * Stops listening and waits for open connections to finish, then cuts those left after a
   * grace of one second.
   */
  readonly close: Effect.Effect<void>
}

export class HttpListener extends Context.Tag("s3-ingest/HttpListener")<HttpListener, HttpListenerShape>() {}

/**
 * The answers before the edge is ready: the service is starting, which includes recovering the
 * journal (a refusal counted as `journal_unavailable`).
 */
const startingAnswer = (metrics: Metrics): Handler => (req, res) => {
  const path = (req.url ?? "/").split("?")[0]
  const [status, body, headers] = path === "/healthz"
    ? [200, `{"status":"ok"}`, {}]
    : path === "/readyz"
    ? [503, `{"status":"starting"}`, {}]
    : [503, `{"error":"starting: recovering the journal"}`, { "retry-after": "1" }]
  if (status === 503 && path !== "/readyz") metrics.rejected("journal_unavailable")
  res.writeHead(status, { "content-type": "application/json", "content-length": String(body.length), ...headers })
  res.end(body)
}

const make = Effect.gen(function*() {
  const config = yield* AppConfig
  const starting = startingAnswer(yield* Metrics)
  // The mark is a field of the socket so that a request changes no collection: a Map updated
  // twice per request grew V8's old generation by about 1 MB/s under a flood of refused requests.
  const connections = new Set<TrackedSocket>()
  const server = createServer({
    requestTimeout: config.requestTimeoutMs,
    headersTimeout: config.requestTimeoutMs,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    // Node checks request deadlines on this interval: 408 arrives within about a second.
    connectionsCheckingInterval: Math.min(1000, config.requestTimeoutMs)
  })
  server.on("request", starting)
  server.on("connection", (connection: Socket) => {
    const socket = connection as TrackedSocket
    socket[IDLE_SINCE] = Date.now()
    connections.add(socket)
    socket.once("close", () => connections.delete(socket))
  })

  const address = config.host.includes(":") ? `[${config.host}]:${config.port}` : `${config.host}:${config.port}`
  yield* Effect.async<void, ListenError>((resume) => {
    const onError = (error: NodeJS.ErrnoException) =>
      resume(Effect.fail(new ListenError({ address, code: error.code, cause: error })))
    server.once("error", onError)
    server.listen(config.port, config.host, () => {
      server.off("error", onError)
      resume(Effect.void)
    })
  })

  const stopListening = Effect.gen(function*() {
    const closed = yield* Deferred.make<void>()
    // Not `http.Server#close`, which would also close connections whose first request is still
    // unparsed: they are answered (with `Connection: close` while draining) and cut after the grace.
    NetServer.prototype.close.call(server, () => Deferred.unsafeDone(closed, Exit.void))
    // Interruptible: this runs in a finalizer, where a timeout could not otherwise cut the wait.
    const awaitClosed = Effect.timeoutOption(Effect.interruptible(Deferred.await(closed)), CLOSE_GRACE)
    if (Option.isNone(yield* awaitClosed)) {
      server.closeAllConnections()
      yield* awaitClosed
    }
  })
  const close = Effect.suspend(() => server.listening ? stopListening : Effect.void)
  // The edge closes the listener as the last step of its drain; this covers a start that failed
  // before the edge was built.
  yield* Effect.addFinalizer(() => close)

  const boundAddress = server.address()
  const port = typeof boundAddress === "object" && boundAddress !== null ? boundAddress.port : config.port

  return HttpListener.of({
    server,
    port,
    serve: (onRequest, onCheckContinue) => {
      server.off("request", starting)
      server.on("request", onRequest)
      server.on("checkContinue", onCheckContinue)
    },
    markBusy: (req) => {
      ;(req.socket as TrackedSocket)[IDLE_SINCE] = BUSY
    },
    markIdle: (res) => {
      const socket = res.socket as TrackedSocket | null
      if (socket !== null && !socket.destroyed) socket[IDLE_SINCE] = Date.now()
    },
    closeIdle: (idleMillis) => {
      const cutoff = Date.now() - idleMillis
      for (const socket of connections) {
        const since = socket[IDLE_SINCE]
        if (since !== BUSY && since <= cutoff) socket.destroy()
      }
    },
    close
  })
})

export const HttpListenerLive: Layer.Layer<HttpListener, ListenError, AppConfig | Metrics> = Layer.scoped(HttpListener, make)
