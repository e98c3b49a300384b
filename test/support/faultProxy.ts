/**
 * A loopback HTTP proxy in front of the test S3 server whose behaviour a test switches at run
 * time, to stage store faults end to end:
 *
 *   pass              forward the request, pipe both bodies
 *   slowdown          answer 503 `SlowDown` without forwarding (to `fraction` of requests; the
 *                     rest pass)
 *   outage            reset the connection: new sockets at once, requests on kept-alive ones
 *                     when they arrive
 *   hang              accept the request and never answer; record when the client closes the
 *                     socket (a deadline on the client side must close it)
 *   applied-then-500  forward, and when the store answered 200, answer 500 `InternalError`
 *   applied-then-hang forward, and when the store answered 200, never answer (a store that
 *                     applied the write, then stalled before its response left)
 *   forbidden         answer 403 `AccessDenied` without forwarding
 *
 * The mode is read when a request's headers arrive; a request keeps the fate it met.
 * Requests are counted per mode and per outcome.
 */
import { randomBytes } from "node:crypto"
import {
  Agent,
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request as httpRequest,
  type ServerResponse
} from "node:http"
import type { Socket } from "node:net"

export type ProxyModeName =
  | "pass"
  | "slowdown"
  | "outage"
  | "hang"
  | "applied-then-500"
  | "applied-then-hang"
  | "forbidden"
  | "slow-body"

export type ProxyMode =
  | { readonly mode: Exclude<ProxyModeName, "slowdown"> }
  /** `fraction` of the requests (default 1) get 503 SlowDown, the others pass. */
  | { readonly mode: "slowdown"; readonly fraction?: number }

/** What the proxy did with a request. */
export type ProxyOutcome =
  | "forwarded"
  | "slowdown"
  | "reset"
  | "hung"
  | "applied-then-500"
  | "applied-then-hang"
  | "forbidden"
  | "upstream-error"

export interface HungRequest {
  readonly method: string
  readonly path: string
  /** `Date.now()` when the request's headers arrived. */
  readonly arrivedAt: number
  /** `Date.now()` when the client's socket closed; undefined while it is open. */
  readonly closedAt: () => number | undefined
  readonly closed: Promise<number>
}

export interface ProxyCounts {
  /** Requests seen while each mode was set (whatever their outcome). */
  readonly byMode: Readonly<Record<ProxyModeName, number>>
  readonly byOutcome: Readonly<Record<ProxyOutcome, number>>
  /** Sockets reset as soon as they were accepted, before any request (outage). */
  readonly connectionsReset: number
  /** PUT requests seen, whatever the mode. */
  readonly puts: number
}

/** A request as the proxy received it. */
export interface SeenRequest {
  readonly method: string
  readonly path: string
  readonly headers: IncomingHttpHeaders
}

export interface FaultProxy {
  readonly endpoint: string
  readonly port: number
  readonly set: (mode: ProxyModeName | ProxyMode) => void
  readonly mode: () => ProxyMode
  readonly counts: () => ProxyCounts
  readonly hung: ReadonlyArray<HungRequest>
  /** Every request, in the order they arrived, whatever its fate. */
  readonly requests: ReadonlyArray<SeenRequest>
  /** Closes the listener, every client and upstream socket (hung ones included). */
  readonly close: () => Promise<void>
}

const modeNames: ReadonlyArray<ProxyModeName> = [
  "pass",
  "slowdown",
  "outage",
  "hang",
  "applied-then-500",
  "applied-then-hang",
  "forbidden",
  "slow-body"
]
const outcomes: ReadonlyArray<ProxyOutcome> = [
  "forwarded",
  "slowdown",
  "reset",
  "hung",
  "applied-then-500",
  "applied-then-hang",
  "forbidden",
  "upstream-error"
]

const zeros = <K extends string>(keys: ReadonlyArray<K>): Record<K, number> =>
  Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>

/** The read rate of "slow-body" mode: a 40 KB object takes 4 s. */
export const SLOW_BODY_BYTES_PER_SECOND = 10_000

/** An S3 error document, as S3 (and the SDK's parser) shape it. */
export const s3ErrorXml = (code: string, message: string): string =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message>` +
  `<RequestId>${randomBytes(8).toString("hex").toUpperCase()}</RequestId></Error>`

// Hop-by-hop headers are the proxy's own business on each leg (RFC 9110 §7.6.1); none of them is
// signed by SigV4, and `host` is kept so the upstream checks the signature the client computed.
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "expect"
])

const endToEnd = (headers: IncomingHttpHeaders): IncomingHttpHeaders => {
  const out: IncomingHttpHeaders = {}
  for (const [name, value] of Object.entries(headers)) {
    if (!HOP_BY_HOP.has(name) && value !== undefined) out[name] = value
  }
  return out
}

/** Starts a proxy on 127.0.0.1 (a free port) forwarding to `upstream` (`http://host:port`). */
export const startFaultProxy = (upstream: string, initial: ProxyModeName | ProxyMode = "pass"): Promise<FaultProxy> => {
  const target = new URL(upstream)
  const agent = new Agent({ keepAlive: true })
  const normalise = (m: ProxyModeName | ProxyMode): ProxyMode =>
    typeof m !== "string" ? m : m === "slowdown" ? { mode: "slowdown" } : { mode: m }
  let current = normalise(initial)
  const byMode = zeros(modeNames)
  const byOutcome = zeros(outcomes)
  let connectionsReset = 0
  let puts = 0
  const hung: Array<HungRequest> = []
  const requests: Array<SeenRequest> = []
  const sockets = new Set<Socket>()

  const answer = (req: IncomingMessage, res: ServerResponse, status: number, code: string, message: string) => {
    // Read the whole request first, as S3 does for small bodies: the client is never cut off
    // mid-write, so what it sees is exactly this answer.
    req.resume()
    req.once("end", () => {
      const body = s3ErrorXml(code, message)
      res.writeHead(status, {
        "content-type": "application/xml",
        "content-length": Buffer.byteLength(body),
        "x-amz-request-id": randomBytes(8).toString("hex").toUpperCase()
      })
      res.end(body)
    })
  }

  /** What to do once the store answered 200: pass it on, or answer 500, or never answer. */
  type AfterApplied = "pass" | "500" | "hang"

  const forward = (req: IncomingMessage, res: ServerResponse, afterApplied: AfterApplied) => {
    const outgoing = httpRequest({
      host: target.hostname,
      port: target.port,
      method: req.method ?? "GET",
      path: req.url ?? "/",
      headers: endToEnd(req.headers),
      agent
    }, (upstreamRes) => {
      const status = upstreamRes.statusCode ?? 502
      if (afterApplied === "hang" && status === 200) {
        upstreamRes.resume()
        byOutcome["applied-then-hang"]++
        return
      }
      if (afterApplied === "500" && status === 200) {
        upstreamRes.resume()
        byOutcome["applied-then-500"]++
        const body = s3ErrorXml("InternalError", "We encountered an internal error. Please try again.")
        res.writeHead(500, { "content-type": "application/xml", "content-length": Buffer.byteLength(body) })
        res.end(body)
        return
      }
      byOutcome.forwarded++
      res.writeHead(status, endToEnd(upstreamRes.headers))
      upstreamRes.pipe(res)
    })
    outgoing.on("error", () => {
      byOutcome["upstream-error"]++
      if (!res.headersSent) res.writeHead(502, { "content-length": 0 }).end()
      else res.destroy()
    })
    // The client gave up (its deadline): give up upstream too.
    res.once("close", () => {
      if (!res.writableFinished) outgoing.destroy()
    })
    req.pipe(outgoing)
  }

  const server = createServer((req, res) => {
    const now = current
    byMode[now.mode]++
    if (req.method === "PUT") puts++
    requests.push({ method: req.method ?? "", path: req.url ?? "", headers: req.headers })
    switch (now.mode) {
      case "pass":
        return forward(req, res, "pass")
      case "applied-then-500":
        return forward(req, res, "500")
      case "applied-then-hang":
        return forward(req, res, "hang")
      case "slowdown":
        if (Math.random() < (now.fraction ?? 1)) {
          byOutcome.slowdown++
          return answer(req, res, 503, "SlowDown", "Reduce your request rate.")
        }
        return forward(req, res, "pass")
      case "forbidden":
        byOutcome.forbidden++
        return answer(req, res, 403, "AccessDenied", "Access Denied")
      case "outage":
        byOutcome.reset++
        req.socket.resetAndDestroy()
        return
      case "slow-body": {
        // Reads the request body at SLOW_BODY_BYTES_PER_SECOND, as a congested link would, and
        // forwards it only when complete; records when the client gave up, like "hang".
        byOutcome.hung++
        const arrivedAt = Date.now()
        let closedAt: number | undefined
        const closed = new Promise<number>((done) =>
          req.socket.once("close", () => {
            closedAt = Date.now()
            done(closedAt)
          })
        )
        hung.push({ method: req.method ?? "", path: req.url ?? "", arrivedAt, closedAt: () => closedAt, closed })
        req.on("data", (chunk: Buffer) => {
          req.pause()
          setTimeout(() => req.resume(), Math.ceil((chunk.length / SLOW_BODY_BYTES_PER_SECOND) * 1000))
        })
        req.on("end", () => {
          if (req.socket.destroyed) return
          res.writeHead(503, { "content-type": "application/xml" })
          res.end(s3ErrorXml("SlowDown", "Body arrived too slowly"))
        })
        return
      }
      case "hang": {
        byOutcome.hung++
        req.resume()
        let closedAt: number | undefined
        const closed = new Promise<number>((done) => {
          const socket = req.socket
          if (socket.destroyed) {
            closedAt = Date.now()
            done(closedAt)
            return
          }
          socket.once("close", () => {
            closedAt = Date.now()
            done(closedAt)
          })
        })
        hung.push({
          method: req.method ?? "",
          path: req.url ?? "",
          arrivedAt: Date.now(),
          closedAt: () => closedAt,
          closed
        })
        return
      }
    }
  })
  // Kept-alive client sockets must not be closed under the client by the proxy's own idle timer
  // in "pass" mode: that would be a fault nobody asked for.
  server.keepAliveTimeout = 120_000
  server.headersTimeout = 120_000
  server.requestTimeout = 0
  server.on("connection", (socket: Socket) => {
    socket.on("error", () => {}) // resets are what the tests provoke
    if (current.mode === "outage") {
      connectionsReset++
      socket.resetAndDestroy()
      return
    }
    sockets.add(socket)
    socket.once("close", () => sockets.delete(socket))
  })
  server.on("clientError", (_error, socket) => socket.destroy())

  return new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      if (typeof address !== "object" || address === null) {
        reject(new Error("fault proxy has no port"))
        return
      }
      resolve({
        endpoint: `http://127.0.0.1:${address.port}`,
        port: address.port,
        set: (mode) => {
          current = normalise(mode)
        },
        mode: () => current,
        counts: () => ({ byMode: { ...byMode }, byOutcome: { ...byOutcome }, connectionsReset, puts }),
        hung,
        requests,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done())
            server.closeAllConnections()
            for (const socket of sockets) socket.destroy()
            agent.destroy()
          })
      })
    })
  })
}
