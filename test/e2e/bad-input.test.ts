/**
 * The bad-input catalogue as ONE table, run in order against one
 * service (`node dist/main.js service`, local storage, its own DATA_DIR) started with small limits:
 * MAX_BODY_BYTES=65536, MAX_JSON_DEPTH=32, MAX_PAYLOADS_PER_REQUEST=100, REQUEST_TIMEOUT_MS=1500,
 * INGEST_TOKENS=good-token.
 *
 * Every request goes over its own raw TCP connection, so each case controls every byte (duplicate
 * headers, obs-fold, NUL, missing Host, `Expect: 100-continue`, slow trickles) and sees every
 * response the server writes (interim 1xx included). For each case the test asserts:
 *  1. the exact status of the contract (or "413 or reset" for a streamed oversized body, the one
 *     place §7 allows a reset);
 *  2. the response: for our handler's answers `Content-Type: application/json` and a body
 *     `{"error": string}` (202: `{"accepted": n}`); for Node's parser answers (400 / 408 / 431
 *     through the `clientError` hook) an empty or `{"error": string}` body; never the case's
 *     marker anywhere in what the server sent;
 *  3. exactly one increment of `s3ingest_requests_rejected_total` with the expected reason where
 *     our code answers, none where Node's parser refused before any handler ran, and the right
 *     change of `s3ingest_payloads_accepted_total`;
 *  4. GET /healthz answers 200 right after the case.
 * Each case's request carries a unique marker; the last test waits until every accepted payload
 * is stored and checks that the controls (202 cases) are stored once per payload, as sent, and
 * that no refused marker is in any object or dead-letter file.
 */
import { randomBytes } from "node:crypto"
import { readFileSync, rmSync } from "node:fs"
import { connect, type Socket } from "node:net"
import { join } from "node:path"
import { gzipSync } from "node:zlib"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { listFiles, ndjsonText, type RunningService, startService } from "../support/service.js"
import { sleep } from "../support/wait.js"
import { REJECTION_REASONS, type RejectionReason } from "../support/contract.js"

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

const MAX_BODY_BYTES = 65_536
const MAX_JSON_DEPTH = 32
const MAX_PAYLOADS_PER_REQUEST = 100
const REQUEST_TIMEOUT_MS = 1_500
const TOKEN = "good-token"

const ENV: Readonly<Record<string, string>> = {
  MAX_BODY_BYTES: String(MAX_BODY_BYTES),
  MAX_JSON_DEPTH: String(MAX_JSON_DEPTH),
  MAX_PAYLOADS_PER_REQUEST: String(MAX_PAYLOADS_PER_REQUEST),
  REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
  INGEST_TOKENS: TOKEN
}

const REASONS = REJECTION_REASONS
type Reason = RejectionReason

/** Body errors whose split between the two 400 labels the contract leaves open. */
const ANY_400: ReadonlyArray<Reason> = ["invalid_json", "invalid_shape"]

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 over TCP
// ---------------------------------------------------------------------------------------------

interface RawResponse {
  readonly status: number
  readonly statusLine: string
  /** Lower-case names; repeated headers joined with ", ". */
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

/** What one connection saw: interim (1xx) responses, the final one (if any), a socket error. */
interface Exchange {
  readonly interim: ReadonlyArray<RawResponse>
  readonly final: RawResponse | undefined
  /** ECONNRESET, EPIPE, …: the socket failed before a final response was read. */
  readonly error: string | undefined
  /** Every byte the server sent, as UTF-8 (checked for the marker). */
  readonly received: string
  /** Every byte the client wrote (checked to carry the marker). */
  readonly sent: Buffer
  /** From the first byte written to the final response (or the give-up). */
  readonly elapsedMs: number
}


class RawConnection {
  private data = Buffer.alloc(0)
  private written: Array<Buffer> = []
  private cursor = 0
  private finished = false
  private failure: string | undefined
  private wake: (() => void) | undefined

  private constructor(private readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.data = Buffer.concat([this.data, chunk])
      this.notify()
    })
    socket.on("error", (error: NodeJS.ErrnoException) => {
      this.failure ??= error.code ?? error.message
      this.notify()
    })
    socket.on("end", () => {
      this.finished = true
      this.notify()
    })
    socket.on("close", () => {
      this.finished = true
      this.notify()
    })
  }

  static open(port: number): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, "127.0.0.1")
      socket.setNoDelay(true)
      const connection = new RawConnection(socket)
      const onError = (error: Error) => reject(error)
      socket.once("error", onError)
      socket.once("connect", () => {
        socket.off("error", onError)
        resolve(connection)
      })
    })
  }

  private notify() {
    const wake = this.wake
    this.wake = undefined
    wake?.()
  }

  /** The server sent something, or closed the connection. */
  get answered(): boolean {
    return this.data.length > 0 || this.finished || this.failure !== undefined
  }

  get error(): string | undefined {
    return this.failure
  }

  get received(): string {
    return this.data.toString("utf8")
  }

  get sent(): Buffer {
    return Buffer.concat(this.written)
  }

  /** Writes and waits for the write callback; a failed write is recorded, never thrown. */
  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed || !this.socket.writable) return resolve()
      const bytes = typeof data === "string" ? Buffer.from(data, "latin1") : data
      this.written.push(bytes)
      this.socket.write(bytes, (error) => {
        if (error !== null && error !== undefined) this.failure ??= (error as NodeJS.ErrnoException).code ?? error.message
        resolve()
      })
    })
  }

  /** The next complete response after the ones already returned, or undefined (closed / timeout). */
  async next(timeoutMs: number): Promise<RawResponse | undefined> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const parsed = this.parse()
      if (parsed !== undefined) return parsed
      if (this.finished) return undefined
      const left = deadline - Date.now()
      if (left <= 0) return undefined
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
  }

  private parse(): RawResponse | undefined {
    const headEnd = this.data.indexOf("\r\n\r\n", this.cursor)
    if (headEnd < 0) return undefined
    const lines = this.data.subarray(this.cursor, headEnd).toString("latin1").split("\r\n")
    const statusLine = lines[0] ?? ""
    const match = /^HTTP\/1\.[01] (\d{3})\b/.exec(statusLine)
    const status = match === null ? 0 : Number(match[1])
    const headers: Record<string, string> = {}
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":")
      if (colon <= 0) continue
      const name = line.slice(0, colon).trim().toLowerCase()
      const value = line.slice(colon + 1).trim()
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`
    }
    const bodyStart = headEnd + 4
    let bodyEnd: number
    if ((status >= 100 && status < 200) || status === 204 || status === 304) {
      bodyEnd = bodyStart
    } else if (/\bchunked\b/i.test(headers["transfer-encoding"] ?? "")) {
      // Node's own bare answers (e.g. 400 for a missing Host) are chunked.
      const parts: Array<Buffer> = []
      let at = bodyStart
      for (;;) {
        const lineEnd = this.data.indexOf("\r\n", at)
        if (lineEnd < 0) return undefined
        const size = parseInt(this.data.subarray(at, lineEnd).toString("latin1"), 16)
        if (Number.isNaN(size)) return undefined
        if (size === 0) {
          // The last chunk, then trailer lines (usually none), then an empty line.
          const trailerEnd = this.data.indexOf("\r\n\r\n", lineEnd)
          if (trailerEnd < 0) return undefined
          this.cursor = trailerEnd + 4
          return { status, statusLine, headers, body: Buffer.concat(parts).toString("utf8") }
        }
        if (this.data.length < lineEnd + 2 + size + 2) return undefined
        parts.push(this.data.subarray(lineEnd + 2, lineEnd + 2 + size))
        at = lineEnd + 2 + size + 2
      }
    } else if (headers["content-length"] !== undefined && /^\d+$/.test(headers["content-length"])) {
      bodyEnd = bodyStart + Number(headers["content-length"])
      if (this.data.length < bodyEnd) return undefined
    } else {
      // No framing: the body runs to the close.
      if (!this.finished) return undefined
      bodyEnd = this.data.length
    }
    this.cursor = bodyEnd
    return { status, statusLine, headers, body: this.data.subarray(bodyStart, bodyEnd).toString("utf8") }
  }

  /** Reads responses until a final one (or `timeoutMs`), then closes the socket. */
  async collect(started: number, timeoutMs: number, interim: Array<RawResponse> = []): Promise<Exchange> {
    const deadline = Date.now() + timeoutMs
    let final: RawResponse | undefined
    while (final === undefined) {
      const response = await this.next(deadline - Date.now())
      if (response === undefined) break
      if (response.status >= 100 && response.status < 200) interim.push(response)
      else final = response
    }
    const elapsedMs = Date.now() - started
    this.close()
    return { interim, final, error: this.failure, received: this.received, sent: this.sent, elapsedMs }
  }

  close() {
    this.socket.destroy()
  }
}

type Header = readonly [name: string, value: string]

interface RequestSpec {
  readonly method?: string
  readonly path?: string
  /** Sent in this order after `Host`, duplicates kept; `Content-Length` is added for a body unless framed. */
  readonly headers?: ReadonlyArray<Header>
  readonly body?: string | Buffer
}

const encode = (spec: RequestSpec): Buffer => {
  const body = spec.body === undefined
    ? Buffer.alloc(0)
    : typeof spec.body === "string"
    ? Buffer.from(spec.body, "utf8")
    : spec.body
  const headers: Array<Header> = [["Host", "127.0.0.1"], ...(spec.headers ?? [])]
  const framed = headers.some(([name]) => /^(content-length|transfer-encoding)$/i.test(name))
  if (!framed && spec.body !== undefined) headers.push(["Content-Length", String(body.length)])
  const head = `${spec.method ?? "POST"} ${spec.path ?? "/v1/payloads"} HTTP/1.1\r\n` +
    headers.map(([name, value]) => `${name}: ${value}\r\n`).join("") + "\r\n"
  return Buffer.concat([Buffer.from(head, "latin1"), body])
}

type Send = (port: number) => Promise<Exchange>

/** Writes the whole request at once, then reads the answer. */
const once = (request: RequestSpec | (() => Buffer), timeoutMs = 5_000): Send => async (port) => {
  const bytes = typeof request === "function" ? request() : encode(request)
  const connection = await RawConnection.open(port)
  const started = Date.now()
  await connection.write(bytes)
  return connection.collect(started, timeoutMs)
}

/** Writes `head`, then `slow` one byte every `stepMs` until the server answers. */
const trickle = (head: string, slow: string, stepMs = 100): Send => async (port) => {
  const connection = await RawConnection.open(port)
  const started = Date.now()
  await connection.write(head)
  for (const byte of slow) {
    await sleep(stepMs)
    if (connection.answered) break
    await connection.write(byte)
  }
  return connection.collect(started, 5_000)
}

/** `head` then `chunks`, each written after the previous one was flushed, until the server answers. */
const streamed = (head: string, chunks: () => ReadonlyArray<Buffer>): Send => async (port) => {
  const connection = await RawConnection.open(port)
  const started = Date.now()
  await connection.write(head)
  for (const chunk of chunks()) {
    if (connection.answered) break
    await connection.write(chunk)
    await new Promise((resolve) => setImmediate(resolve))
  }
  return connection.collect(started, 5_000)
}

/** `Expect: 100-continue`: the head alone, then the body only after a `100 Continue`. */
const expectContinue = (headers: ReadonlyArray<Header>, body: string): Send => async (port) => {
  const bytes = Buffer.from(body, "utf8")
  const head = encode({ headers: [...headers, ["Content-Length", String(bytes.length)], ["Expect", "100-continue"]] })
  const connection = await RawConnection.open(port)
  const started = Date.now()
  await connection.write(head)
  const first = await connection.next(3_000)
  if (first === undefined || first.status !== 100) {
    connection.close()
    return {
      interim: [],
      final: first,
      error: connection.error,
      received: connection.received,
      sent: connection.sent,
      elapsedMs: Date.now() - started
    }
  }
  await connection.write(bytes)
  return connection.collect(started, 5_000, [first])
}

const get = async (port: number, path: string): Promise<RawResponse> => {
  const exchange = await once({ method: "GET", path, headers: [["Connection", "close"]] })(port)
  if (exchange.final === undefined) throw new Error(`GET ${path}: no response (${exchange.error ?? "closed"})`)
  return exchange.final
}

// --- metrics --------------------------------------------------------------------------------

interface Counters {
  readonly rejected: Readonly<Record<string, number>>
  readonly accepted: number
  readonly stored: number
}

const counters = async (port: number): Promise<Counters> => {
  const reply = await get(port, "/metrics")
  expect(reply.status).toBe(200)
  const rejected: Record<string, number> = {}
  let accepted = 0
  let stored = 0
  for (const line of reply.body.split("\n")) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line)
    if (match === null) continue
    const value = Number(match[3])
    if (match[1] === "s3ingest_requests_rejected_total") {
      const reason = /reason="([^"]*)"/.exec(match[2] ?? "")?.[1]
      if (reason !== undefined) rejected[reason] = value
    } else if (match[1] === "s3ingest_payloads_accepted_total") {
      accepted = value
    } else if (match[1] === "s3ingest_payloads_stored_total") {
      stored = value
    }
  }
  return { rejected, accepted, stored }
}

// ---------------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------------

const RUN = randomBytes(4).toString("hex")
const JSON_TYPE: Header = ["Content-Type", "application/json"]

/** A collection with the given raw `data` text (and raw version / token texts). */
const collection = (data: string, token = JSON.stringify(TOKEN), version = `"1"`): string =>
  `{"version":${version},"token":${token},"data":${data}}`

/** A valid one-payload collection whose payload id is the marker. */
const valid = (marker: string): string => collection(`[{"id":"${marker}","n":1}]`)

/** A valid collection of `size` bytes (a pad inside the payload). */
const padded = (marker: string, size: number): string => {
  const base = collection(`[{"id":"${marker}","pad":""}]`)
  return collection(`[{"id":"${marker}","pad":"${"x".repeat(size - base.length)}"}]`)
}

/** The start of `text`, cut just after the marker (a body that never completes but carries it). */
const upToMarker = (text: string, marker: string): string => text.slice(0, text.indexOf(marker) + marker.length + 1)

/** `levels` objects nested around `{}`: `levels + 1` objects deep. */
const nested = (levels: number): string => {
  let text = "{}"
  for (let i = 0; i < levels; i++) text = `{"a":${text}}`
  return text
}

/** A collection whose deepest container sits at `depth`: top object (1), data (2), payload (3), nest (4…). */
const atDepth = (marker: string, depth: number): string =>
  collection(`[{"id":"${marker}","n":${nested(depth - 4)}}]`)

/** A POST of `body` with `Content-Type: application/json` and the given extra headers. */
const json = (body: string | Buffer, ...headers: ReadonlyArray<Header>): RequestSpec => ({
  body,
  headers: [JSON_TYPE, ...headers]
})

/** A raw request text ending its head with CRLF CRLF and followed by `body` (no framing added). */
const rawText = (head: ReadonlyArray<string>, body = ""): (() => Buffer) => () =>
  Buffer.from(`${head.join("\r\n")}\r\n\r\n${body}`, "latin1")

const withBytes = (marker: string, bytes: ReadonlyArray<number>): Buffer =>
  Buffer.concat([
    Buffer.from(collection(`[{"id":"${marker}","s":"`).slice(0, -1), "utf8"),
    Buffer.from(bytes),
    Buffer.from(`"}]}`, "utf8")
  ])

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

interface CaseSpec {
  readonly send: Send
  /** The exact status of the contract. */
  readonly status: number
  /** The contract allows a reset instead (streamed oversized body only). */
  readonly orReset?: true
  /** Who answers: our request handler (default) or Node's HTTP parser via the `clientError` hook. */
  readonly by?: "handler" | "node"
  /**
   * The `s3ingest_requests_rejected_total` label counted once for this refusal; a list when
   * §8 leaves the split open. Absent for 202 and for Node parser refusals: nothing is counted.
   */
  readonly reason?: Reason | ReadonlyArray<Reason>
  /** For 202: the payload count answered and later stored. */
  readonly accepted?: number
  /** Answered well before REQUEST_TIMEOUT_MS: the server did not wait for the body. */
  readonly beforeBody?: true
  readonly check?: (exchange: Exchange, reply: RawResponse | undefined) => void
  /** The marker is inside a gzip body, so not literally in the bytes sent. */
  readonly compressed?: true
  /** For 202: checks the stored lines that carry the marker. */
  readonly stored?: (lines: ReadonlyArray<string>) => void
}

interface Case extends CaseSpec {
  readonly name: string
  /** Unique in the run; in every request of the case and never in any answer. */
  readonly marker: string
}

let caseSeq = 0
const kase = (name: string, spec: (marker: string) => CaseSpec): Case => {
  const marker = `bi${RUN}n${String(++caseSeq).padStart(3, "0")}q`
  return { name, marker, ...spec(marker) }
}

const onlyValue = (lines: ReadonlyArray<string>): Record<string, unknown> => {
  expect(lines).toHaveLength(1)
  return JSON.parse(lines[0]!) as Record<string, unknown>
}

const head = (...lines: ReadonlyArray<string>) => ["POST /v1/payloads HTTP/1.1", "Host: 127.0.0.1", ...lines]

const cases: ReadonlyArray<Case> = [
  // --- controls and bodies over the limit --------------------------------------------------
  kase("control: valid collection, Authorization: Bearer good-token", (m) => ({
    send: once(json(valid(m), ["Authorization", `Bearer ${TOKEN}`])),
    status: 202,
    accepted: 1
  })),
  kase("declared Content-Length over the limit, whole body sent → 413 answer, not a reset", (m) => ({
    send: once(json(padded(m, MAX_BODY_BYTES + 4_096))),
    status: 413,
    reason: "too_large",
    beforeBody: true
  })),
  kase("declared Content-Length 10 MB, only the head and a body start sent → 413 at once", (m) => ({
    send: once(() =>
      Buffer.concat([
        encode({ headers: [JSON_TYPE, ["Content-Length", "10000000"]] }),
        Buffer.from(upToMarker(valid(m), m))
      ])
    ),
    status: 413,
    reason: "too_large",
    beforeBody: true
  })),
  kase("chunked body over the limit (no Content-Length) → 413 or reset", (m) => ({
    send: streamed(
      `POST /v1/payloads HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`,
      () => {
        const body = Buffer.from(padded(m, MAX_BODY_BYTES + 16_384))
        const chunks: Array<Buffer> = []
        for (let at = 0; at < body.length; at += 8_192) {
          const part = body.subarray(at, at + 8_192)
          chunks.push(Buffer.concat([Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from("\r\n")]))
        }
        chunks.push(Buffer.from("0\r\n\r\n"))
        return chunks
      }
    ),
    status: 413,
    orReset: true,
    reason: "too_large"
  })),
  kase("gzip bomb: a few KB inflating to 10 MB → 413", (m) => ({
    send: once(() => {
      const inflated = collection(`[{"id":"${m}","pad":"${"\u0020".repeat(10 * 1024 * 1024)}"}]`)
      const bomb = gzipSync(Buffer.from(inflated))
      expect(bomb.length).toBeLessThan(MAX_BODY_BYTES / 2)
      return encode(json(bomb, ["Content-Encoding", "gzip"]))
    }),
    compressed: true,
    status: 413,
    reason: "too_large"
  })),
  kase("Content-Encoding: gzip, body not gzip at all → 400", (m) => ({
    send: once(json(`not gzip ${valid(m)}`, ["Content-Encoding", "gzip"])),
    status: 400,
    reason: ANY_400
  })),
  kase("Content-Encoding: gzip, truncated gzip stream → 400", (m) => ({
    send: once(() => {
      const gz = gzipSync(Buffer.from(valid(m)))
      return encode(json(gz.subarray(0, gz.length - 12), ["Content-Encoding", "gzip"]))
    }),
    compressed: true,
    status: 400,
    reason: ANY_400
  })),
  kase("control: gzip body, charset=utf-8, two payloads", (m) => ({
    send: once(() =>
      encode({
        body: gzipSync(Buffer.from(collection(`[{"id":"${m}-1","t":"zipped ✓"},{"id":"${m}-2"}]`))),
        headers: [["Content-Type", "application/json; charset=utf-8"], ["Content-Encoding", "gzip"]]
      })
    ),
    compressed: true,
    status: 202,
    accepted: 2,
    stored: (lines) => expect(lines.map((line) => JSON.parse(line) as unknown)).toContainEqual({ id: `${m}-1`, t: "zipped ✓" })
  })),

  // --- 415 ------------------------------------------------------------------------------
  kase("Content-Encoding: br → 415", (m) => ({
    send: once(json(valid(m), ["Content-Encoding", "br"])),
    status: 415,
    reason: "unsupported_encoding"
  })),
  kase("Content-Encoding: x-foo → 415", (m) => ({
    send: once(json(valid(m), ["Content-Encoding", "x-foo"])),
    status: 415,
    reason: "unsupported_encoding"
  })),
  kase("Content-Type missing → 415", (m) => ({
    send: once({ body: valid(m) }),
    status: 415,
    reason: "unsupported_media_type"
  })),
  kase("Content-Type: text/plain → 415", (m) => ({
    send: once({ body: valid(m), headers: [["Content-Type", "text/plain"]] }),
    status: 415,
    reason: "unsupported_media_type"
  })),
  kase("Content-Type: application/x-www-form-urlencoded → 415", (m) => ({
    send: once({ body: valid(m), headers: [["Content-Type", "application/x-www-form-urlencoded"]] }),
    status: 415,
    reason: "unsupported_media_type"
  })),
  kase("Content-Type: application/json; charset=latin1 → 415", (m) => ({
    send: once({ body: valid(m), headers: [["Content-Type", "application/json; charset=latin1"]] }),
    status: 415,
    reason: "unsupported_media_type"
  })),

  // --- timeouts and header abuse (Node's parser) ---------------------------------------------
  kase("slow headers: one byte every 100 ms past REQUEST_TIMEOUT_MS → 408", (m) => ({
    send: trickle(
      `POST /v1/payloads HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Case: ${m}\r\n`,
      `X-Slow: ${"z".repeat(100)}`
    ),
    status: 408,
    by: "node",
    reason: "timeout",
    check: (exchange) => {
      expect(exchange.elapsedMs).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 100)
      expect(exchange.elapsedMs).toBeLessThan(REQUEST_TIMEOUT_MS + 2_500)
    }
  })),
  kase("slow body: head and body start at once, then one byte every 100 ms → 408", (m) => {
    const body = padded(m, 300)
    const start = upToMarker(body, m)
    return {
      send: trickle(
        `POST /v1/payloads HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${start}`,
        body.slice(start.length)
      ),
      status: 408,
      by: "node",
      reason: "timeout",
      check: (exchange) => {
        expect(exchange.elapsedMs).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 100)
        expect(exchange.elapsedMs).toBeLessThan(REQUEST_TIMEOUT_MS + 2_500)
      }
    }
  }),
  kase("header flood: one 20 KB header → 431", (m) => ({
    send: once(json(valid(m), ["X-Flood", "f".repeat(20_000)])),
    status: 431,
    by: "node"
  })),
  kase("smuggling: Content-Length and Transfer-Encoding: chunked together → 400", (m) => {
    const body = valid(m)
    const chunked = `${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n`
    return {
      send: once(rawText(
        head("Content-Type: application/json", `Content-Length: ${chunked.length}`, "Transfer-Encoding: chunked"),
        chunked
      )),
      status: 400,
      by: "node"
    }
  }),
  kase("smuggling: two different Content-Length headers → 400", (m) => {
    const body = valid(m)
    return {
      send: once(rawText(
        head("Content-Type: application/json", `Content-Length: ${body.length}`, `Content-Length: ${body.length - 5}`),
        body
      )),
      status: 400,
      by: "node"
    }
  }),
  kase("obs-fold: a header continued on the next line → 400", (m) => {
    const body = valid(m)
    return {
      send: once(rawText(head("Content-Type: application/json", "X-Folded: a", " b", `Content-Length: ${body.length}`), body)),
      status: 400,
      by: "node"
    }
  }),
  kase("NUL byte inside a header value → 400", (m) => {
    const body = valid(m)
    return {
      send: once(rawText(head("Content-Type: application/json", "X-Nul: a\u0000b", `Content-Length: ${body.length}`), body)),
      status: 400,
      by: "node"
    }
  }),
  kase("space before the colon of a header name → 400", (m) => {
    const body = valid(m)
    return {
      send: once(rawText(head("Content-Type : application/json", `Content-Length: ${body.length}`), body)),
      status: 400,
      by: "node"
    }
  }),
  kase("HTTP/1.1 request without Host → 400", (m) => {
    const body = valid(m)
    return {
      send: once(rawText(["POST /v1/payloads HTTP/1.1", "Content-Type: application/json", `Content-Length: ${body.length}`], body)),
      status: 400,
      by: "node"
    }
  }),

  // --- Expect: 100-continue ---------------------------------------------------------------
  kase("Expect: 100-continue with Content-Length over the limit → 413 first, never 100", (m) => ({
    send: once({
      headers: [JSON_TYPE, ["Content-Length", String(MAX_BODY_BYTES * 4)], ["Expect", "100-continue"], ["X-Case", m]]
    }),
    status: 413,
    reason: "too_large",
    beforeBody: true,
    check: (exchange) => {
      expect(exchange.interim.map((r) => r.status)).toEqual([])
      expect(exchange.received.split("\r\n")[0]).toMatch(/^HTTP\/1\.1 413 /)
    }
  })),
  kase("control: Expect: 100-continue with a valid body → 100 Continue, then 202", (m) => ({
    send: expectContinue([JSON_TYPE], valid(m)),
    status: 202,
    accepted: 1,
    check: (exchange) => expect(exchange.interim.map((r) => r.status)).toEqual([100])
  })),

  // --- encodings and strings ----------------------------------------------------------------
  kase("invalid UTF-8 bytes (C3 28 FF FE) → 400", (m) => ({
    send: once(json(withBytes(m, [0xc3, 0x28, 0xff, 0xfe]))),
    status: 400,
    reason: "invalid_json"
  })),
  kase("overlong UTF-8 ('/' as C0 AF) → 400", (m) => ({
    send: once(json(withBytes(m, [0xc0, 0xaf]))),
    status: 400,
    reason: "invalid_json"
  })),
  kase("UTF-8-encoded lone surrogate (ED A0 80) → 400", (m) => ({
    send: once(json(withBytes(m, [0xed, 0xa0, 0x80]))),
    status: 400,
    reason: "invalid_json"
  })),
  // --- the I-JSON profile (the default): what would make a shared object unreadable -------------
  kase("escaped lone surrogate \"\\ud800\" in a payload → 400 (I-JSON)", (m) => ({
    send: once(json(collection(`[{"id":"${m}","s":"a\\ud800b","t":"\\udfff"}]`))),
    status: 400,
    reason: "invalid_json"
  })),
  kase("a member name twice in a payload's nested object → 400 (I-JSON)", (m) => ({
    send: once(json(collection(`[{"id":"${m}","x":{"a":1,"b":2,"a":3}}]`))),
    status: 400,
    reason: "invalid_json"
  })),
  kase("a number beyond a double (1e400) in a payload → 400 (I-JSON)", (m) => ({
    send: once(json(collection(`[{"id":"${m}","n":1e400}]`))),
    status: 400,
    reason: "invalid_json"
  })),
  kase("control: escaped surrogate pair and the largest double in a payload → 202, stored as sent", (m) => ({
    send: once(json(collection(`[{"id":"${m}","s":"\\ud83d\\ude00","n":1.7976931348623157e308}]`))),
    status: 202,
    accepted: 1,
    stored: (lines) => {
      expect(lines[0]).toContain("\\ud83d\\ude00")
      expect(onlyValue(lines).s).toBe("😀")
    }
  })),

  // --- duplicate keys and prototype keys -----------------------------------------------------
  kase("duplicate \"token\" key (bad, then good) → 400", (m) => ({
    send: once(json(`{"version":"1","token":"nope","token":"${TOKEN}","data":[{"id":"${m}"}]}`)),
    status: 400,
    reason: ANY_400
  })),
  kase("duplicate \"version\" key → 400", (m) => ({
    send: once(json(`{"version":"1","token":"${TOKEN}","version":"2","data":[{"id":"${m}"}]}`)),
    status: 400,
    reason: ANY_400
  })),
  kase("control: __proto__ and constructor keys inside a payload → 202, stored as own keys", (m) => ({
    send: once(json(collection(`[{"id":"${m}","__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}}}]`))),
    status: 202,
    accepted: 1,
    stored: (lines) => {
      const value = onlyValue(lines)
      expect(Object.keys(value)).toEqual(["id", "__proto__", "constructor"])
      expect(Object.getPrototypeOf(value)).toBe(Object.prototype)
      expect(Object.getOwnPropertyDescriptor(value, "__proto__")?.value).toEqual({ polluted: true })
      expect(Object.getOwnPropertyDescriptor(value, "constructor")?.value).toEqual({ prototype: { x: 1 } })
    }
  })),
  kase("control: top-level __proto__ carrying version/token/data → 202 with the real fields", (m) => ({
    send: once(json(
      `{"__proto__":{"version":"","token":"nope","data":[]},"version":"1","token":"${TOKEN}","data":[{"id":"${m}"}]}`
    )),
    status: 202,
    accepted: 1,
    stored: (lines) => expect(onlyValue(lines)).toEqual({ id: m })
  })),

  // --- nesting ------------------------------------------------------------------------------
  kase("10 000-deep nesting inside a payload → 400", (m) => ({
    send: once(json(collection(`[{"id":"${m}","x":${"[".repeat(10_000)}${"]".repeat(10_000)}}]`))),
    status: 400,
    reason: ANY_400
  })),
  kase(`nesting ${MAX_JSON_DEPTH + 1} deep (MAX_JSON_DEPTH + 1) → 400`, (m) => ({
    send: once(json(atDepth(m, MAX_JSON_DEPTH + 1))),
    status: 400,
    reason: ANY_400
  })),
  kase(`control: nesting exactly ${MAX_JSON_DEPTH} deep → 202`, (m) => ({
    send: once(json(atDepth(m, MAX_JSON_DEPTH))),
    status: 202,
    accepted: 1,
    stored: (lines) => expect(onlyValue(lines)).toEqual(JSON.parse(`{"id":"${m}","n":${nested(MAX_JSON_DEPTH - 4)}}`))
  })),

  // --- wrong types and shapes ---------------------------------------------------------------
  kase("\"version\" a number → 400", (m) => ({
    send: once(json(collection(`[{"id":"${m}"}]`, JSON.stringify(TOKEN), "1"))),
    status: 400,
    reason: "invalid_shape"
  })),
  kase("\"token\" null → 400", (m) => ({
    send: once(json(collection(`[{"id":"${m}"}]`, "null"))),
    status: 400,
    reason: "invalid_shape"
  })),
  kase("\"data\" an object → 400", (m) => ({
    send: once(json(collection(`{"id":"${m}"}`))),
    status: 400,
    reason: "invalid_shape"
  })),
  kase("\"data\" [] → 400", (m) => ({
    send: once(json(collection("[]"), ["X-Case", m])),
    status: 400,
    reason: "invalid_shape"
  })),
  kase("\"data\" [1] → 400", (m) => ({
    send: once(json(`{"version":"1","token":"${TOKEN}","data":[1],"note":"${m}"}`)),
    status: 400,
    reason: "invalid_shape"
  })),
  kase("\"data\" [null] (beside a valid payload) → 400", (m) => ({
    send: once(json(collection(`[null,{"id":"${m}"}]`))),
    status: 400,
    reason: "invalid_shape"
  })),
  kase(`${MAX_PAYLOADS_PER_REQUEST + 1} payloads → 413 too_many_payloads`, (m) => ({
    send: once(json(collection(`[${
      Array.from({ length: MAX_PAYLOADS_PER_REQUEST + 1 }, (_, i) => `{"id":"${m}-${i}"}`).join(",")
    }]`))),
    status: 413,
    reason: "too_many_payloads"
  })),
  kase("empty body → 400", (m) => ({
    send: once(json("", ["X-Case", m])),
    status: 400,
    reason: ANY_400
  })),
  kase("JSON body null → 400", (m) => ({
    send: once(json("null", ["X-Case", m])),
    status: 400,
    reason: ANY_400
  })),

  // --- tokens -------------------------------------------------------------------------------
  kase("Authorization: Bearer nope, body never completes → 401 before the body is read", (m) => ({
    send: once(() =>
      Buffer.concat([
        encode({ headers: [JSON_TYPE, ["Content-Length", "500"], ["Authorization", "Bearer nope"]] }),
        Buffer.from(upToMarker(valid(m), m))
      ])
    ),
    status: 401,
    reason: "unauthorized",
    beforeBody: true
  })),
  kase("Authorization: Basic (good-token as the user) with a valid body → 401", (m) => ({
    send: once(json(valid(m), ["Authorization", `Basic ${Buffer.from(`${TOKEN}:`).toString("base64")}`])),
    status: 401,
    reason: "unauthorized"
  })),
  kase("body token not in the allow-list → 401", (m) => ({
    send: once(json(collection(`[{"id":"${m}"}]`, JSON.stringify(`${TOKEN}x`)))),
    status: 401,
    reason: "unauthorized"
  })),

  // --- methods and paths --------------------------------------------------------------------
  kase("PUT /v1/payloads with a valid body → 405, Allow: POST", (m) => ({
    send: once({ ...json(valid(m)), method: "PUT" }),
    status: 405,
    reason: "method_not_allowed",
    check: (_, reply) => expect(reply?.headers.allow).toBe("POST")
  })),
  kase("DELETE /v1/payloads (text/plain, bad bearer: 405 comes first) → 405, Allow: POST", (m) => ({
    send: once({ method: "DELETE", body: valid(m), headers: [["Content-Type", "text/plain"], ["Authorization", "Bearer nope"]] }),
    status: 405,
    reason: "method_not_allowed",
    check: (_, reply) => expect(reply?.headers.allow).toBe("POST")
  })),
  kase("POST /v1/payloads/../x → 404", (m) => ({
    send: once({ ...json(valid(m)), path: "/v1/payloads/../x" }),
    status: 404,
    reason: "not_found"
  })),
  kase("POST /v1/payloads/extra → 404", (m) => ({
    send: once({ ...json(valid(m)), path: "/v1/payloads/extra" }),
    status: 404,
    reason: "not_found"
  })),
  kase("POST //v1/payloads → 404", (m) => ({
    send: once({ ...json(valid(m)), path: "//v1/payloads" }),
    status: 404,
    reason: "not_found"
  })),
  kase("control: query string on /v1/payloads with a valid body → 202", (m) => ({
    send: once({ ...json(valid(m)), path: `/v1/payloads?source=${m}&x=../y` }),
    status: 202,
    accepted: 1
  }))
]

// ---------------------------------------------------------------------------------------------
// Run
// ---------------------------------------------------------------------------------------------

let service: RunningService | undefined

beforeAll(async () => {
  service = await startService({ ...ENV })
})

afterAll(async () => {
  if (service === undefined) return
  const running = service
  const guard = setTimeout(() => running.child.kill("SIGKILL"), 10_000)
  try {
    await running.stop("SIGTERM")
  } finally {
    clearTimeout(guard)
    rmSync(running.dataDir, { recursive: true, force: true })
  }
})

const port = (): number => {
  if (service === undefined) throw new Error("service not started")
  return service.port
}

const delta = (before: Counters, after: Counters, reason: string) =>
  (after.rejected[reason] ?? 0) - (before.rejected[reason] ?? 0)

/** The error body of the contract: exactly `{"error": <non-empty string>}`. */
const expectErrorBody = (reply: RawResponse) => {
  expect(reply.headers["content-type"]).toMatch(/^application\/json\b/i)
  const body: unknown = JSON.parse(reply.body)
  expect(body).toEqual({ error: expect.any(String) })
  expect(Object.keys(body as object)).toEqual(["error"])
  expect((body as { readonly error: string }).error.length).toBeGreaterThan(0)
}

describe("bad-input catalogue", () => {
  it("has at least 30 cases with unique markers and some controls", () => {
    expect(cases.length).toBeGreaterThanOrEqual(30)
    expect(new Set(cases.map((c) => c.marker)).size).toBe(cases.length)
    expect(cases.filter((c) => c.status === 202).length).toBeGreaterThanOrEqual(3)
  })

  for (const [index, c] of cases.entries()) {
    it(`#${index + 1} ${c.name}`, async () => {
      const before = await counters(port())
      const exchange = await c.send(port())
      const after = await counters(port())
      const reply = exchange.final
      if (c.compressed !== true) expect(exchange.sent.includes(c.marker), "the request carries the marker").toBe(true)

      // (1) the status of the contract (a reset only where it allows one)
      if (reply === undefined) {
        expect(c.orReset, `no response (socket: ${exchange.error ?? "closed"}) where §7 requires ${c.status}`).toBe(true)
        expect(["ECONNRESET", "EPIPE"]).toContain(exchange.error)
      } else {
        expect(reply.status, `${reply.statusLine} ${reply.body.slice(0, 200)}`).toBe(c.status)
      }
      if (c.beforeBody === true) expect(exchange.elapsedMs).toBeLessThan(REQUEST_TIMEOUT_MS - 500)

      // (2) the body, and no echo of the request
      expect(exchange.received).not.toContain(c.marker)
      if (reply !== undefined) {
        if (c.status === 202) {
          expect(reply.headers["content-type"]).toMatch(/^application\/json\b/i)
          expect(JSON.parse(reply.body)).toEqual({ accepted: c.accepted })
        } else if (c.by === "node") {
          if (reply.body !== "") expect(JSON.parse(reply.body)).toEqual({ error: expect.any(String) })
        } else {
          expectErrorBody(reply)
        }
      }
      c.check?.(exchange, reply)

      // (3) counted once under the expected label; nothing accepted by a refusal
      const expected: ReadonlyArray<Reason> = c.reason === undefined
        ? []
        : typeof c.reason === "string"
        ? [c.reason]
        : c.reason
      const total = REASONS.reduce((sum, reason) => sum + delta(before, after, reason), 0)
      const counted = expected.reduce((sum, reason) => sum + delta(before, after, reason), 0)
      expect({ counted, total }).toEqual({ counted: expected.length === 0 ? 0 : 1, total: expected.length === 0 ? 0 : 1 })
      expect(after.accepted - before.accepted).toBe(c.accepted ?? 0)

      // (4) still alive
      const health = await get(port(), "/healthz")
      expect(health.status).toBe(200)
    })
  }

  it("after the flush: every control stored once per payload as sent, no refused marker stored", async () => {
    const running = service!
    const expectedAccepted = cases.reduce((sum, c) => sum + (c.accepted ?? 0), 0)
    const deadline = Date.now() + 10_000
    let now = await counters(port())
    while (!(now.accepted === expectedAccepted && now.stored === expectedAccepted) && Date.now() < deadline) {
      await sleep(50)
      now = await counters(port())
    }
    expect({ accepted: now.accepted, stored: now.stored }).toEqual({ accepted: expectedAccepted, stored: expectedAccepted })

    const linesUnder = (dir: string): Array<string> =>
      listFiles(dir).flatMap((file) =>
        ndjsonText(file, readFileSync(join(dir, file))).split("\n").filter((line) => line !== "")
      )
    const stored = linesUnder(join(running.dataDir, "objects"))
    const deadLettered = linesUnder(join(running.dataDir, "dead-letter"))
    expect(stored).toHaveLength(expectedAccepted)
    expect(deadLettered).toEqual([])

    for (const c of cases) {
      const mine = stored.filter((line) => line.includes(c.marker))
      if (c.status === 202) {
        expect(mine, `${c.name}: stored lines`).toHaveLength(c.accepted ?? 0)
        c.stored?.(mine)
      } else {
        expect(mine, `${c.name}: refused but stored`).toEqual([])
      }
    }
  })
})
