/**
 * End-to-end tests of the external HTTP contract (statuses, settings, metrics) against the built service,
 * `node dist/main.js service`, run as a child process on loopback. Each describe block shares one
 * service instance (started in beforeAll, stopped by its handle in afterAll); requests go over
 * fresh connections (`agent: false`) so no keep-alive state leaks between cases.
 *
 * Every error answer is checked for: the exact status, a JSON body `{"error": string}` with
 * `Content-Type: application/json`, no echo of the request (a marker in the body, token or path),
 * and exactly one increment of `s3ingest_requests_rejected_total` with the expected reason.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { request as httpRequest } from "node:http"
import { connect, createServer, type Server, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { gzipSync } from "node:zlib"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  freePort,
  listFiles,
  type LogLine,
  MAIN,
  ndjsonText,
  type RunningService,
  startService
} from "../support/service.js"
import { REJECTION_REASONS, type RejectionReason } from "../support/contract.js"
import { call as httpCall, type Reply, type RequestSpec } from "../support/http.js"
import { waitFor } from "../support/wait.js"

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const RUN = randomBytes(4).toString("hex")
let markerSeq = 0
/** A unique string to put in a request and look for in the answer (it must never be echoed). */
const marker = (label: string): string => `mk${RUN}${label}${++markerSeq}`

const tempDirs: Array<string> = []
const tempDir = (label: string): string => {
  const dir = mkdtempSync(join(tmpdir(), `s3-ingest-http-${label}-`))
  tempDirs.push(dir)
  return dir
}

/** Where a service listens. */
interface Target {
  readonly port: number
}

/** One request on a fresh connection with full control of the headers (fetch adds its own). */
const call = (service: Target, spec: RequestSpec = {}): Promise<Reply> => httpCall(service.port, spec)

const JSON_HEADERS = { "content-type": "application/json" } as const

const post = (service: Target, body: string | Buffer, headers: Readonly<Record<string, string>> = {}) =>
  call(service, { body, headers: { ...JSON_HEADERS, ...headers } })

const get = (service: Target, path: string) => call(service, { method: "GET", path })

/** A collection body, compact JSON. */
const collection = (data: ReadonlyArray<unknown>, token = "test-token", version = "1.4"): string =>
  JSON.stringify({ version, token, data })

/** A valid one-payload collection of exactly `size` bytes (UTF-8), padded inside the payload. */
const sizedCollection = (size: number, id: string, token = "test-token"): string => {
  const base = collection([{ id, pad: "" }], token)
  const pad = size - Buffer.byteLength(base)
  if (pad < 0) throw new Error(`cannot build a ${size}-byte collection`)
  const body = collection([{ id, pad: "x".repeat(pad) }], token)
  expect(Buffer.byteLength(body)).toBe(size)
  return body
}

/** The status, the `{"error": string}` JSON body, and no echo of any of `secrets`. */
const expectError = (reply: Reply, status: number, secrets: ReadonlyArray<string> = []): void => {
  expect(reply.status).toBe(status)
  expect(reply.headers["content-type"]).toMatch(/^application\/json\b/i)
  const body: unknown = JSON.parse(reply.text)
  expect(body).toEqual({ error: expect.any(String) })
  expect(Object.keys(body as object)).toEqual(["error"])
  expect((body as { readonly error: string }).error.length).toBeGreaterThan(0)
  for (const secret of secrets) expect(reply.text).not.toContain(secret)
}

const expectAccepted = (reply: Reply, count: number): void => {
  expect(reply.status).toBe(202)
  expect(reply.headers["content-type"]).toMatch(/^application\/json\b/i)
  expect(JSON.parse(reply.text)).toEqual({ accepted: count })
}

const expectRetryAfter = (reply: Reply): void => {
  const value = reply.headers["retry-after"]
  expect(value).toMatch(/^\d+$/)
  const seconds = Number(value)
  expect(seconds).toBeGreaterThanOrEqual(1)
  expect(seconds).toBeLessThanOrEqual(60)
}

// --- metrics --------------------------------------------------------------------------------

interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

const parseSamples = (text: string): Array<Sample> =>
  text.split("\n").flatMap((line) => {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line)
    if (match === null) return []
    const labels: Record<string, string> = {}
    for (const pair of (match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1]!] = pair[2]!
    }
    return [{ name: match[1]!, labels, value: Number(match[3]) }]
  })

const scrape = async (service: Target): Promise<string> => {
  const reply = await get(service, "/metrics")
  expect(reply.status).toBe(200)
  return reply.text
}

/** The value of one sample (labels matched exactly), or undefined. */
const sampleValue = (text: string, name: string, labels: Readonly<Record<string, string>> = {}): number | undefined =>
  parseSamples(text).find((s) =>
    s.name === name && Object.keys(s.labels).length === Object.keys(labels).length &&
    Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  )?.value

const metric = async (service: Target, name: string, labels: Readonly<Record<string, string>> = {}) =>
  sampleValue(await scrape(service), name, labels) ?? Number.NaN

const rejectedByReason = async (service: Target): Promise<Record<string, number>> => {
  const counts: Record<string, number> = {}
  for (const s of parseSamples(await scrape(service))) {
    const reason = s.labels.reason
    if (s.name === "s3ingest_requests_rejected_total" && reason !== undefined) counts[reason] = s.value
  }
  return counts
}

type Reason = RejectionReason

/** Per service: rejections the tests caused, keyed by the reason group they expected. */
const rejectionTally = new WeakMap<Target, Map<string, number>>()

/**
 * Runs `act` and checks that exactly `times` rejections were counted, all under `reasons`
 * (a list when the contract leaves the split open, e.g. the two 400 reasons).
 */
const rejectedAs = async <A>(
  service: Target,
  reasons: ReadonlyArray<Reason>,
  act: () => Promise<A>,
  times = 1
): Promise<A> => {
  const before = await rejectedByReason(service)
  const result = await act()
  const after = await rejectedByReason(service)
  const delta = (reason: string) => (after[reason] ?? 0) - (before[reason] ?? 0)
  const total = REJECTION_REASONS.reduce((sum, reason) => sum + delta(reason), 0)
  const expected = reasons.reduce((sum, reason) => sum + delta(reason), 0)
  expect({ counted: expected, total }).toEqual({ counted: times, total: times })
  const tally = rejectionTally.get(service) ?? new Map<string, number>()
  rejectionTally.set(service, tally)
  const group = [...reasons].sort().join("|")
  tally.set(group, (tally.get(group) ?? 0) + times)
  return result
}

// --- storage --------------------------------------------------------------------------------

const objectsDir = (service: RunningService) => join(service.dataDir, "objects")

interface StoredObject {
  readonly file: string
  readonly text: string
}

const storedObjects = (service: RunningService): Array<StoredObject> =>
  listFiles(objectsDir(service)).map((file) => ({
    file,
    text: ndjsonText(file, readFileSync(join(objectsDir(service), file)))
  }))

const linesOf = (text: string): Array<string> => text.split("\n").filter((line) => line !== "")

const idOf = (line: string): unknown => (JSON.parse(line) as { readonly id?: unknown }).id


/** Waits until a stored line exists for each id; returns id → raw line (and its object file). */
const waitForStored = (service: RunningService, ids: ReadonlyArray<string>) =>
  waitFor(`payloads ${ids.join(", ")} to be stored`, () => {
    const found = new Map<string, { readonly line: string; readonly file: string }>()
    for (const object of storedObjects(service)) {
      for (const line of linesOf(object.text)) {
        const id = idOf(line)
        if (typeof id === "string" && ids.includes(id)) {
          expect(found.has(id), `payload ${id} stored twice`).toBe(false)
          found.set(id, { line, file: object.file })
        }
      }
    }
    return found.size === ids.length ? found : undefined
  })

/** A deterministic rendering of a JSON value: own keys sorted (`__proto__` included). */
const canonical = (value: unknown): string => {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`
  if (typeof value === "object" && value !== null) {
    const record = value as Record<string, unknown>
    return `{${Object.keys(record).sort().map((key) => `${JSON.stringify(key)}:${canonical(record[key])}`).join(",")}}`
  }
  return JSON.stringify(value)
}

const expectSameValue = (storedLine: string, sentText: string): void => {
  expect(canonical(JSON.parse(storedLine))).toBe(canonical(JSON.parse(sentText)))
}

// --- services and raw sockets --------------------------------------------------------------

/** Stops a service by its handle (SIGKILL after 10 s) and removes its DATA_DIR. */
const stopService = async (service: RunningService | undefined, signal: NodeJS.Signals = "SIGTERM") => {
  if (service === undefined) return
  const guard = setTimeout(() => service.child.kill("SIGKILL"), 10_000)
  try {
    await service.stop(signal)
  } finally {
    clearTimeout(guard)
    rmSync(service.dataDir, { recursive: true, force: true })
  }
}

type ChunkedOutcome =
  | { readonly _tag: "Reply"; readonly reply: Reply }
  | { readonly _tag: "Reset"; readonly code: string }

/** Streams `chunks` with `Transfer-Encoding: chunked` (no Content-Length). */
const postChunked = (
  service: Target,
  chunks: ReadonlyArray<Buffer>,
  headers: Readonly<Record<string, string>> = {}
): Promise<ChunkedOutcome> =>
  new Promise((resolve) => {
    let settled = false
    let answered = false
    const settle = (outcome: ChunkedOutcome) => {
      if (!settled) {
        settled = true
        resolve(outcome)
      }
    }
    const req = httpRequest({
      host: "127.0.0.1",
      port: service.port,
      method: "POST",
      path: "/v1/payloads",
      headers: { ...JSON_HEADERS, ...headers },
      agent: false
    }, (res) => {
      answered = true
      const received: Array<Buffer> = []
      res.on("data", (chunk: Buffer) => received.push(chunk))
      res.on("end", () =>
        settle({
          _tag: "Reply",
          reply: { status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(received).toString("utf8") }
        }))
      res.on("error", (error: NodeJS.ErrnoException) => settle({ _tag: "Reset", code: error.code ?? error.message }))
    })
    req.on("error", (error: NodeJS.ErrnoException) => settle({ _tag: "Reset", code: error.code ?? error.message }))
    const writeNext = (index: number) => {
      if (answered || settled || req.destroyed) return
      const chunk = chunks[index]
      if (chunk === undefined) return void req.end()
      req.write(chunk, () => setImmediate(() => writeNext(index + 1)))
    }
    writeNext(0)
  })

interface RawResponse {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
  readonly raw: string
  readonly elapsedMs: number
}

/**
 * Writes `data` on a raw TCP socket and waits (at most `timeoutMs`) for one complete HTTP
 * response (headers and Content-Length body, or everything up to the close).
 */
const rawExchange = (port: number, data: string, timeoutMs: number): Promise<RawResponse | undefined> =>
  new Promise((resolve) => {
    const started = Date.now()
    const socket: Socket = connect(port, "127.0.0.1")
    let received = Buffer.alloc(0)
    let done = false
    const finish = (complete: boolean) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      const raw = received.toString("utf8")
      const headEnd = raw.indexOf("\r\n\r\n")
      const statusMatch = /^HTTP\/1\.1 (\d{3})/.exec(raw)
      if (!complete && headEnd < 0) return resolve(undefined)
      if (statusMatch === null) return resolve(undefined)
      const headers: Record<string, string> = {}
      for (const line of raw.slice(0, headEnd < 0 ? raw.length : headEnd).split("\r\n").slice(1)) {
        const colon = line.indexOf(":")
        if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
      }
      resolve({
        status: Number(statusMatch[1]),
        headers,
        body: headEnd < 0 ? "" : raw.slice(headEnd + 4),
        raw,
        elapsedMs: Date.now() - started
      })
    }
    const timer = setTimeout(() => finish(false), timeoutMs)
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk])
      const headEnd = received.indexOf("\r\n\r\n")
      if (headEnd < 0) return
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(received.subarray(0, headEnd).toString("latin1"))
      if (length !== null && received.length >= headEnd + 4 + Number(length[1])) finish(true)
    })
    socket.on("end", () => finish(true))
    socket.on("close", () => finish(true))
    socket.on("error", () => finish(true))
    socket.write(data)
  })

const expectRawJsonError = (response: RawResponse | undefined, status: number, secrets: ReadonlyArray<string>) => {
  expect(response, "no HTTP response on the socket").toBeDefined()
  const { body, headers, raw } = response!
  expect(response!.status).toBe(status)
  expect(headers["content-type"]).toMatch(/^application\/json\b/i)
  expect(JSON.parse(body)).toEqual({ error: expect.any(String) })
  for (const secret of secrets) expect(raw).not.toContain(secret)
}

// --- CLI --------------------------------------------------------------------------------------

interface CliResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
  /** The service logged "listening" (it was then killed): a configuration that should fail did not. */
  readonly started: boolean
}

const cliChildren = new Set<ChildProcess>()

/** Runs `node dist/main.js ...args` with only PATH and `env`; kills it once it listens or after 10 s. */
const runCli = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>>): Promise<CliResult> =>
  new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      env: { PATH: process.env.PATH ?? "", ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    cliChildren.add(child)
    let stdout = ""
    let stderr = ""
    let started = false
    const guard = setTimeout(() => child.kill("SIGKILL"), 10_000)
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk
      if (!started && stdout.includes(`"message":"listening"`)) {
        started = true
        child.kill("SIGKILL")
      }
    })
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk
    })
    child.on("close", (code) => {
      clearTimeout(guard)
      cliChildren.delete(child)
      resolve({ code, stdout, stderr, started })
    })
  })

// ---------------------------------------------------------------------------------------------
// The default instance: the documented defaults, local storage, no allow-list.
// ---------------------------------------------------------------------------------------------

let main: RunningService

beforeAll(async () => {
  main = await startService()
})

afterAll(async () => {
  await stopService(main)
  for (const child of cliChildren) child.kill("SIGKILL")
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true })
})

/** Element texts exactly as sent: nested, unicode, escaped surrogate pairs, `__proto__`, tricky strings. */
const samplePayloads = (label: string) => {
  const id = (n: number) => `${label}-${RUN}-${n}`
  const texts = {
    nested: `{"id":"${id(1)}","nested":{"a":[1,{"b":null}],"c":{"d":{"e":[true,false,1.5e3,-0.25,{}]}}},"empty":[]}`,
    unicode: JSON.stringify({ id: id(2), text: "héllo wörld — ✓ 😀 中文 \"quoted\" back\\slash\ttab", raw: "\u2028" })
      .slice(0, -1) + `,"escaped":"\\u00e9\\u4e2d\\ud83d\\ude00"}`,
    surrogate: `{"id":"${id(3)}","s":"a\\ud83d\\ude00b","t":"\\udbff\\udfff","u":"x\\u00e9y"}`,
    proto: `{"id":"${id(4)}","__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}`,
    structural: `{"id":"${id(5)}","brackets":"[[[[{{{{ ]]]}} \\" ,: \\\\","key,with\\"quote":1}`,
    lookalike: `{"id":"${id(6)}","version":"inner","token":"inner","data":[1,2,{"data":[]}]}`
  } as const
  return { texts, ids: [1, 2, 3, 4, 5, 6].map(id) }
}

/** payloads/yyyy/mm/dd/hh/<yyyymmddTHHMMSSmmmZ>-<8 hex>-<8 digits>.ndjson.gz, under DATA_DIR/objects. */
const KEY_LAYOUT =
  /^payloads\/(\d{4})\/(\d{2})\/(\d{2})\/(\d{2})\/((\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z)-[0-9a-f]{8}-\d{8}\.ndjson\.gz$/

describe("202 Accepted: payloads are queued and stored as sent", () => {
  it("answers 202 {\"accepted\":n} and stores every payload under the key layout, parsing to the value sent", async () => {
    const { ids, texts } = samplePayloads("compact")
    const elements = Object.values(texts)
    const body = `{"version":"1.4","token":"tok","data":[${elements.join(",")}]}`
    const acceptedBefore = await metric(main, "s3ingest_payloads_accepted_total")
    const storedBefore = await metric(main, "s3ingest_payloads_stored_total")
    const started = Date.now()

    expectAccepted(await post(main, body), elements.length)
    expect(await metric(main, "s3ingest_payloads_accepted_total")).toBe(acceptedBefore + elements.length)

    const stored = await waitForStored(main, ids)
    const finished = Date.now()
    elements.forEach((text, i) => expectSameValue(stored.get(ids[i]!)!.line, text))

    // Key layout: payloads/yyyy/mm/dd/hh/<yyyymmddTHHMMSSmmmZ>-<8 hex>-<8 digits>.ndjson, UTC.
    for (const { file } of stored.values()) {
      const match = KEY_LAYOUT.exec(file.split("\\").join("/"))
      expect(match, file).not.toBeNull()
      const [, yyyy, mm, dd, hh, , sy, smo, sd, sh, smi, ss, sms] = match!
      expect([yyyy, mm, dd, hh]).toEqual([sy, smo, sd, sh])
      const at = Date.UTC(Number(sy), Number(smo) - 1, Number(sd), Number(sh), Number(smi), Number(ss), Number(sms))
      expect(at).toBeGreaterThanOrEqual(started - 1_000)
      expect(at).toBeLessThanOrEqual(finished + 1_000)
    }
    // NDJSON: every object ends with "\n", one payload per line.
    for (const object of storedObjects(main)) {
      expect(object.text.endsWith("\n")).toBe(true)
      for (const line of linesOf(object.text)) expect(() => JSON.parse(line)).not.toThrow()
    }
    await waitFor(
      "stored counter",
      async () => (await metric(main, "s3ingest_payloads_stored_total")) >= storedBefore + elements.length || undefined
    )
  })

  it("keeps __proto__ and constructor keys as data (own keys, no prototype change)", async () => {
    const { ids, texts } = samplePayloads("proto")
    expectAccepted(await post(main, `{"version":"1","token":"t","data":[${texts.proto}]}`), 1)
    const stored = await waitForStored(main, [ids[3]!])
    const line = stored.get(ids[3]!)!.line
    const value = JSON.parse(line) as Record<string, unknown>
    expect(Object.keys(value)).toEqual(["id", "__proto__", "constructor"])
    expect(Object.prototype.hasOwnProperty.call(value, "__proto__")).toBe(true)
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype)
    expect(Object.getOwnPropertyDescriptor(value, "__proto__")?.value).toEqual({ polluted: true })
    expect(Object.getOwnPropertyDescriptor(value, "constructor")?.value).toEqual({ prototype: { polluted: true } })
    expectSameValue(line, texts.proto)
  })

  it("keeps escaped surrogate pairs as sent; refuses a lone one (I-JSON), which JSON_PROFILE=json keeps", async () => {
    const { ids, texts } = samplePayloads("surrogate")
    expectAccepted(await post(main, `{"version":"1","token":"t","data":[${texts.surrogate}]}`), 1)
    const line = (await waitForStored(main, [ids[2]!])).get(ids[2]!)!.line
    const value = JSON.parse(line) as Record<string, string>
    expect(value.s).toBe("a😀b")
    expect(value.t).toBe("\udbff\udfff")
    expect(line).not.toContain("\ufffd")
    expectSameValue(line, texts.surrogate)

    const lone = `{"id":"${marker("lone")}","s":"a\\ud800b","t":"\\udfff"}`
    const refused = await rejectedAs(main, ["invalid_json", "invalid_shape"], () =>
      post(main, `{"version":"1","token":"t","data":[${lone}]}`))
    expectError(refused, 400)
    expect(JSON.parse(refused.text)).toEqual({ error: "a payload holds an escaped lone surrogate (I-JSON)" })

    const plain = await startService({ JSON_PROFILE: "json" })
    try {
      expectAccepted(await post(plain, `{"version":"1","token":"t","data":[${lone}]}`), 1)
      const loneId = (JSON.parse(lone) as { id: string }).id
      const storedLine = (await waitForStored(plain, [loneId])).get(loneId)!.line
      const stored = JSON.parse(storedLine) as Record<string, string>
      expect(stored.s).toBe("a\ud800b")
      expect(stored.t).toBe("\udfff")
    } finally {
      await stopService(plain)
    }
  })

  it("stores a pretty-printed (multi-line) collection as one line per payload, same values", async () => {
    const { ids, texts } = samplePayloads("pretty")
    const elements = Object.values(texts)
    const pretty = `{\n  "version": "1.4",\n  "token": "tok",\n  "data": [\n${
      elements.map((text) => JSON.stringify(JSON.parse(text), null, 2)).join(",\n")
    }\n  ]\n}\n`
    expectAccepted(await post(main, pretty), elements.length)
    const stored = await waitForStored(main, ids)
    elements.forEach((text, i) => expectSameValue(stored.get(ids[i]!)!.line, text))
    const proto = JSON.parse(stored.get(ids[3]!)!.line) as object
    expect(Object.keys(proto)).toContain("__proto__")
    expect((JSON.parse(stored.get(ids[2]!)!.line) as Record<string, string>).s).toBe("a😀b")
  })

  it("accepts nesting of exactly MAX_JSON_DEPTH (64) and brackets inside strings", async () => {
    const id = marker("depth64")
    // top-level object (1) + data array (2) + payload (3) + 61 nested objects (4…64) = depth 64.
    let nested = "{}"
    for (let i = 0; i < 60; i++) nested = `{"a":${nested}}`
    const stringy = marker("strings")
    const body = `{"version":"1","token":"t","data":[{"id":"${id}","n":${nested}},{"id":"${stringy}","s":"${
      "[".repeat(200)
    }${"{".repeat(200)}"}]}`
    expectAccepted(await post(main, body), 2)
    const stored = await waitForStored(main, [id, stringy])
    expect((JSON.parse(stored.get(stringy)!.line) as Record<string, string>).s).toBe("[".repeat(200) + "{".repeat(200))
  })
})

// ---------------------------------------------------------------------------------------------

describe("400 Bad Request", () => {
  const secret = marker("secret400")
  const ok = `{"id":"${secret}"}`
  const deepObject = (levels: number) => {
    let nested = "{}"
    for (let i = 0; i < levels; i++) nested = `{"a":${nested}}`
    return nested
  }

  interface Case {
    readonly name: string
    readonly body: string | Buffer
  }

  const cases: ReadonlyArray<Case> = [
    { name: "malformed JSON (unclosed)", body: `{"version":"1","token":"${secret}","data":[${ok}]` },
    { name: "malformed JSON (trailing comma)", body: `{"version":"1","token":"${secret}","data":[${ok}],}` },
    { name: "malformed JSON (unterminated string)", body: `{"version":"1","token":"${secret}` },
    { name: "empty body", body: "" },
    {
      name: "invalid UTF-8 bytes",
      body: Buffer.concat([
        Buffer.from(`{"version":"1","token":"${secret}","data":[{"s":"`),
        Buffer.from([0xc3, 0x28, 0xff, 0xfe]),
        Buffer.from(`"}]}`)
      ])
    },
    {
      name: "overlong UTF-8 encoding",
      body: Buffer.concat([
        Buffer.from(`{"version":"1","token":"${secret}","data":[{"s":"`),
        Buffer.from([0xc0, 0xaf]),
        Buffer.from(`"}]}`)
      ])
    },
    { name: "top-level array", body: `[{"version":"1","token":"${secret}","data":[${ok}]}]` },
    { name: "top-level string", body: JSON.stringify(secret) },
    { name: "top-level null", body: "null" },
    // object (1) + data (2) + 63 nested objects (3…65)
    { name: "nesting deeper than MAX_JSON_DEPTH (65)", body: `{"version":"1","token":"${secret}","data":[${deepObject(62)}]}` },
    { name: "nesting 100 deep inside a payload", body: `{"version":"1","token":"${secret}","data":[{"x":${deepObject(100)}}]}` },
    {
      name: "arrays nested 100k deep inside a payload",
      body: `{"version":"1","token":"${secret}","data":[{"x":${"[".repeat(100_000)}${"]".repeat(100_000)}}]}`
    },
    { name: "duplicated \"token\" key", body: `{"version":"1","token":"a","token":"${secret}","data":[${ok}]}` },
    {
      name: "duplicated \"token\" key (escaped spelling)",
      body: `{"version":"1","token":"a","tok\\u0065n":"${secret}","data":[${ok}]}`
    },
    { name: "duplicated \"version\" key", body: `{"version":"1","token":"${secret}","version":"2","data":[${ok}]}` },
    { name: "version missing", body: `{"token":"${secret}","data":[${ok}]}` },
    { name: "version empty string", body: `{"version":"","token":"${secret}","data":[${ok}]}` },
    { name: "version a number", body: `{"version":1,"token":"${secret}","data":[${ok}]}` },
    { name: "version null", body: `{"version":null,"token":"${secret}","data":[${ok}]}` },
    { name: "token missing", body: `{"version":"1","data":[${ok}]}` },
    { name: "token a number", body: `{"version":"1","token":42,"data":[${ok}]}` },
    { name: "token null", body: `{"version":"1","token":null,"data":[${ok}]}` },
    { name: "data missing", body: `{"version":"1","token":"${secret}"}` },
    { name: "data an empty array", body: `{"version":"1","token":"${secret}","data":[]}` },
    { name: "data an object", body: `{"version":"1","token":"${secret}","data":${ok}}` },
    { name: "data a string", body: `{"version":"1","token":"${secret}","data":"${secret}"}` },
    { name: "data containing a number", body: `{"version":"1","token":"${secret}","data":[${ok},1]}` },
    { name: "data containing an array", body: `{"version":"1","token":"${secret}","data":[${ok},[${ok}]]}` },
    { name: "data containing null", body: `{"version":"1","token":"${secret}","data":[null,${ok}]}` },
    { name: "data containing a string", body: `{"version":"1","token":"${secret}","data":["${secret}"]}` }
  ]

  it.each(cases)("400 for $name, without echo, counted as invalid_json/invalid_shape", async ({ body }) => {
    const accepted = await metric(main, "s3ingest_payloads_accepted_total")
    const reply = await rejectedAs(main, ["invalid_json", "invalid_shape"], () => post(main, body))
    expectError(reply, 400, [secret])
    expect(await metric(main, "s3ingest_payloads_accepted_total")).toBe(accepted)
  })
})

// ---------------------------------------------------------------------------------------------

describe("415 Unsupported Media Type (and the accepted media types)", () => {
  const secret = marker("secret415")
  const body = collection([{ id: secret }], secret)

  it("415 when Content-Type is missing", async () => {
    const reply = await rejectedAs(main, ["unsupported_media_type"], () => call(main, { body }))
    expectError(reply, 415, [secret])
  })

  it.each([
    "text/plain",
    "application/x-www-form-urlencoded",
    "application/jsonx",
    "application/json; charset=latin1",
    "application/json; charset=utf-16"
  ])(
    "415 for Content-Type %s",
    async (contentType) => {
      const reply = await rejectedAs(main, ["unsupported_media_type"], () => post(main, body, { "content-type": contentType }))
      expectError(reply, 415, [secret])
    }
  )

  it.each(["br", "deflate", "compress", "x-unknown"])("415 for Content-Encoding %s", async (encoding) => {
    const reply = await rejectedAs(main, ["unsupported_encoding"], () => post(main, body, { "content-encoding": encoding }))
    expectError(reply, 415, [secret])
  })

  it("202 for application/json; charset=utf-8 and for Content-Encoding: identity", async () => {
    const a = marker("charset")
    const b = marker("identity")
    expectAccepted(await post(main, collection([{ id: a }]), { "content-type": "application/json; charset=utf-8" }), 1)
    expectAccepted(await post(main, collection([{ id: b }]), { "content-encoding": "identity" }), 1)
    await waitForStored(main, [a, b])
  })

  it("202 for a gzip body, stored inflated", async () => {
    const ids = [marker("gzip"), marker("gzip")]
    const gz = gzipSync(Buffer.from(collection(ids.map((id) => ({ id, text: "zipped ✓ 😀" })))))
    expectAccepted(await post(main, gz, { "content-encoding": "gzip" }), 2)
    const stored = await waitForStored(main, ids)
    expect(JSON.parse(stored.get(ids[0]!)!.line)).toEqual({ id: ids[0], text: "zipped ✓ 😀" })
  })
})

// ---------------------------------------------------------------------------------------------

describe("404 Not Found and 405 Method Not Allowed", () => {
  it.each(["/", "/v1", "/v1/payloads/", "/v2/payloads", "/v1/payloadsx", "/nope"])("404 for POST %s", async (path) => {
    const secret = marker("path")
    const reply = await rejectedAs(main, ["not_found"], () =>
      call(main, { path: `${path}?q=${secret}`, body: collection([{ id: secret }], secret), headers: JSON_HEADERS }))
    expectError(reply, 404, [secret])
  })

  it("404 for an unknown path whose name is echoed nowhere", async () => {
    const secret = marker("pathname")
    const reply = await rejectedAs(main, ["not_found"], () => get(main, `/${secret}`))
    expectError(reply, 404, [secret])
  })

  it.each(["GET", "PUT", "DELETE", "PATCH"])("405 with Allow: POST for %s /v1/payloads", async (method) => {
    const secret = marker("method")
    const reply = await rejectedAs(main, ["method_not_allowed"], () =>
      call(main, {
        method,
        path: `/v1/payloads?x=${secret}`,
        ...(method === "GET" ? {} : { body: collection([{ id: secret }], secret), headers: JSON_HEADERS })
      }))
    expectError(reply, 405, [secret])
    expect(reply.headers.allow).toBe("POST")
  })
})

// ---------------------------------------------------------------------------------------------

describe("probes and metrics", () => {
  it("GET /healthz → 200 and GET /readyz → 200", async () => {
    expect((await get(main, "/healthz")).status).toBe(200)
    expect((await get(main, "/readyz")).status).toBe(200)
  })

  it("GET /metrics → Prometheus text with every documented metric and the process metrics", async () => {
    const reply = await get(main, "/metrics")
    expect(reply.status).toBe(200)
    expect(reply.headers["content-type"]).toMatch(/^text\/plain/)
    const types: Record<string, string> = {
      s3ingest_payloads_accepted_total: "counter",
      s3ingest_payloads_stored_total: "counter",
      s3ingest_payloads_dead_lettered_total: "counter",
      s3ingest_payloads_lost_total: "counter",
      s3ingest_objects_stored_total: "counter",
      s3ingest_requests_rejected_total: "counter",
      s3ingest_queue_payloads: "gauge",
      s3ingest_queue_bytes: "gauge",
      s3ingest_payloads_in_flight: "gauge",
      s3ingest_upload_attempts_total: "counter",
      s3ingest_store_breaker_state: "gauge",
      s3ingest_upload_duration_seconds: "histogram",
      s3ingest_payload_delivery_seconds: "histogram",
      process_resident_memory_bytes: "gauge"
    }
    for (const [name, type] of Object.entries(types)) {
      expect(reply.text, name).toMatch(new RegExp(`^# TYPE ${name} ${type}$`, "m"))
    }
    const samples = parseSamples(reply.text)
    expect(sampleValue(reply.text, "process_resident_memory_bytes")).toBeGreaterThan(0)
    expect(sampleValue(reply.text, "s3ingest_store_breaker_state")).toBe(0)
    // Histogram buckets of §8: 0.005 … 30 s and 0.01 … 120 s.
    expect(sampleValue(reply.text, "s3ingest_upload_duration_seconds_bucket", { le: "0.005" })).toBeDefined()
    expect(sampleValue(reply.text, "s3ingest_upload_duration_seconds_bucket", { le: "30" })).toBeDefined()
    expect(sampleValue(reply.text, "s3ingest_payload_delivery_seconds_bucket", { le: "0.01" })).toBeDefined()
    expect(sampleValue(reply.text, "s3ingest_payload_delivery_seconds_bucket", { le: "120" })).toBeDefined()
    for (const s of samples.filter((s) => s.name === "s3ingest_requests_rejected_total")) {
      expect(REJECTION_REASONS).toContain(s.labels.reason)
    }
  })

  it("rejection counters by reason add up to the rejections of the blocks above; accepted = stored", async () => {
    const text = await scrape(main)
    const value = (name: string, labels: Readonly<Record<string, string>> = {}) => sampleValue(text, name, labels) ?? 0
    const rejected = (reason: string) => value("s3ingest_requests_rejected_total", { reason })
    // Totals since start, by the reason group each earlier request on this instance expected.
    const tally = rejectionTally.get(main) ?? new Map<string, number>()
    const grouped = new Set<string>()
    for (const [group, count] of tally) {
      const reasons = group.split("|")
      for (const reason of reasons) {
        expect(grouped.has(reason), `${reason} in two groups`).toBe(false)
        grouped.add(reason)
      }
      expect(reasons.reduce((sum, reason) => sum + rejected(reason), 0), group).toBe(count)
    }
    for (const reason of REJECTION_REASONS) if (!grouped.has(reason)) expect(rejected(reason), reason).toBe(0)
    // Every payload answered 202 is stored once the queue is idle.
    const accepted = value("s3ingest_payloads_accepted_total")
    expect(accepted).toBeGreaterThan(0)
    await waitFor("all accepted payloads stored", async () =>
      (await metric(main, "s3ingest_payloads_stored_total")) === accepted || undefined)
    const after = await scrape(main)
    expect(sampleValue(after, "s3ingest_objects_stored_total")).toBeGreaterThan(0)
    expect(sampleValue(after, "s3ingest_upload_attempts_total", { outcome: "ok" })).toBe(
      sampleValue(after, "s3ingest_objects_stored_total")
    )
    expect(sampleValue(after, "s3ingest_payload_delivery_seconds_count")).toBe(accepted)
    expect(sampleValue(after, "s3ingest_queue_payloads")).toBe(0)
    expect(sampleValue(after, "s3ingest_payloads_in_flight")).toBe(0)
    expect(sampleValue(after, "s3ingest_payloads_dead_lettered_total")).toBe(0)
    expect(sampleValue(after, "s3ingest_payloads_lost_total")).toBe(0)
  })
})

// ---------------------------------------------------------------------------------------------

describe("413 Payload Too Large (MAX_BODY_BYTES=1024, MAX_PAYLOADS_PER_REQUEST=3)", () => {
  let limits: RunningService
  const refused: Array<string> = []
  const admitted: Array<string> = []

  beforeAll(async () => {
    limits = await startService({ MAX_BODY_BYTES: "1024", MAX_PAYLOADS_PER_REQUEST: "3" })
  })
  afterAll(async () => {
    await stopService(limits)
  })

  it("413 as an answer (not a reset) for a declared Content-Length over the limit", async () => {
    const id = marker("declared")
    refused.push(id)
    const reply = await rejectedAs(limits, ["too_large"], () => post(limits, sizedCollection(4096, id, id)))
    expectError(reply, 413, [id])
  })

  it("the limit is inclusive: 1024 bytes → 202, 1025 bytes → 413", async () => {
    const fits = marker("fits")
    admitted.push(fits)
    expectAccepted(await post(limits, sizedCollection(1024, fits)), 1)
    const over = marker("over")
    refused.push(over)
    expectError(await rejectedAs(limits, ["too_large"], () => post(limits, sizedCollection(1025, over))), 413, [over])
  })

  it("413 for a gzip body that inflates beyond MAX_BODY_BYTES; 202 for one that inflates within it", async () => {
    const bomb = marker("bomb")
    refused.push(bomb)
    const compressed = gzipSync(Buffer.from(sizedCollection(64 * 1024, bomb, bomb)))
    expect(compressed.length).toBeLessThan(1024)
    const reply = await rejectedAs(limits, ["too_large"], () => post(limits, compressed, { "content-encoding": "gzip" }))
    expectError(reply, 413, [bomb])

    const small = marker("smallgz")
    admitted.push(small)
    expectAccepted(await post(limits, gzipSync(Buffer.from(sizedCollection(1000, small))), { "content-encoding": "gzip" }), 1)
  })

  it("a chunked body over the limit gets 413 or a reset, and nothing is admitted", async () => {
    const id = marker("chunked")
    refused.push(id)
    const body = Buffer.from(sizedCollection(8192, id, id))
    const chunks = Array.from({ length: 16 }, (_, i) => body.subarray(i * 512, (i + 1) * 512))
    const accepted = await metric(limits, "s3ingest_payloads_accepted_total")
    const outcome = await postChunked(limits, chunks)
    if (outcome._tag === "Reply") expectError(outcome.reply, 413, [id])
    else expect(["ECONNRESET", "EPIPE"]).toContain(outcome.code)
    expect(await metric(limits, "s3ingest_payloads_accepted_total")).toBe(accepted)
    // Nothing of it is anywhere: accepted = stored + queued + in flight still holds.
    const [stored, queued, inFlight] = await Promise.all([
      metric(limits, "s3ingest_payloads_stored_total"),
      metric(limits, "s3ingest_queue_payloads"),
      metric(limits, "s3ingest_payloads_in_flight")
    ])
    expect(stored + queued + inFlight).toBe(accepted)
  })

  it("a chunked body within the limit is accepted", async () => {
    const id = marker("chunkedok")
    admitted.push(id)
    const body = Buffer.from(sizedCollection(900, id))
    const outcome = await postChunked(limits, [body.subarray(0, 300), body.subarray(300, 600), body.subarray(600)])
    expect(outcome._tag).toBe("Reply")
    if (outcome._tag === "Reply") expectAccepted(outcome.reply, 1)
  })

  it("413 for more than MAX_PAYLOADS_PER_REQUEST payloads; exactly that many → 202", async () => {
    const ids = [marker("count"), marker("count"), marker("count"), marker("count")]
    refused.push(...ids)
    const reply = await rejectedAs(limits, ["too_many_payloads"], () =>
      post(limits, collection(ids.map((id) => ({ id })), ids[0])))
    expectError(reply, 413, ids)
    const three = [marker("three"), marker("three"), marker("three")]
    admitted.push(...three)
    expectAccepted(await post(limits, collection(three.map((id) => ({ id })))), 3)
  })

  it("stores what was admitted and nothing that was refused", async () => {
    await waitForStored(limits, admitted)
    const all = storedObjects(limits).map((o) => o.text).join("")
    for (const id of refused) expect(all).not.toContain(id)
    expect(await metric(limits, "s3ingest_payloads_accepted_total")).toBe(admitted.length)
  })
})

// ---------------------------------------------------------------------------------------------

describe("401 Unauthorized (INGEST_TOKENS=alpha,beta)", () => {
  let auth: RunningService

  beforeAll(async () => {
    auth = await startService({ INGEST_TOKENS: "alpha,beta" })
  })
  afterAll(async () => {
    await stopService(auth)
  })

  const payload = () => ({ id: marker("auth") })

  it.each(["nope", "ALPHA", "alph", "alphax", "alpha,beta", "", " alpha"])("401 for body token %j", async (token) => {
    const secret = marker("tok")
    const body = collection([{ id: secret }], token === "nope" ? `nope-${secret}` : token)
    const reply = await rejectedAs(auth, ["unauthorized"], () => post(auth, body))
    expectError(reply, 401, [secret])
    if (token.length > 1) expect(reply.text).not.toContain(token)
  })

  it("202 for body token alpha and for body token beta", async () => {
    expectAccepted(await post(auth, collection([payload()], "alpha")), 1)
    expectAccepted(await post(auth, collection([payload(), payload()], "beta")), 2)
  })

  it("401 for Authorization: Bearer wrong with a valid body token", async () => {
    const secret = marker("bearer")
    const reply = await rejectedAs(auth, ["unauthorized"], () =>
      post(auth, collection([payload()], "alpha"), { authorization: `Bearer ${secret}` }))
    expectError(reply, 401, [secret])
  })

  it("202 for Authorization: Bearer beta with a valid body token", async () => {
    expectAccepted(await post(auth, collection([payload()], "alpha"), { authorization: "Bearer beta" }), 1)
  })

  it("401 for Authorization: Bearer beta when the body token is not in the list", async () => {
    const secret = marker("bodytok")
    const reply = await rejectedAs(auth, ["unauthorized"], () =>
      post(auth, collection([payload()], secret), { authorization: "Bearer beta" }))
    expectError(reply, 401, [secret])
  })

  it("the header is checked before the body: malformed body + bad bearer → 401", async () => {
    const secret = marker("hdrfirst")
    const reply = await rejectedAs(auth, ["unauthorized"], () =>
      post(auth, `{"version":"1","token":"alpha","data":[{"id":"${secret}"}]`, { authorization: "Bearer wrong" }))
    expectError(reply, 401, [secret])
  })

  it("the header is checked before the body is read: 401 arrives without the body being sent", async () => {
    const secret = marker("nobody")
    const head = `POST /v1/payloads HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
      `Content-Length: 100\r\nAuthorization: Bearer ${secret}\r\n\r\n`
    // The default REQUEST_TIMEOUT_MS is 10 s: an answer within 3 s did not wait for the body.
    const response = await rejectedAs(auth, ["unauthorized"], () => rawExchange(auth.port, head, 3_000))
    expectRawJsonError(response, 401, [secret])
  })

  it("400 precedes the body-token 401: malformed body with no header → 400", async () => {
    const secret = marker("malformed")
    const reply = await rejectedAs(auth, ["invalid_json", "invalid_shape"], () =>
      post(auth, `{"version":"1","token":"${secret}","data":[{"id":1}]`))
    expectError(reply, 400, [secret])
    const shape = await rejectedAs(auth, ["invalid_json", "invalid_shape"], () =>
      post(auth, collection([], secret)))
    expectError(shape, 400, [secret])
  })

  it("malformed body with a valid bearer → 400", async () => {
    const reply = await rejectedAs(auth, ["invalid_json", "invalid_shape"], () =>
      post(auth, `{"version":"1","token":"alpha","data":[`, { authorization: "Bearer alpha" }))
    expectError(reply, 400)
  })

  describe("INGEST_TOKENS_FILE (one token per line)", () => {
    let fromFile: RunningService

    beforeAll(async () => {
      const file = join(tempDir("tokens"), "tokens.txt")
      writeFileSync(file, "gamma\n\ndelta\r\n")
      fromFile = await startService({ INGEST_TOKENS_FILE: file })
    })
    afterAll(async () => {
      await stopService(fromFile)
    })

    it("202 for tokens of the file, in the body or the header", async () => {
      expectAccepted(await post(fromFile, collection([payload()], "gamma")), 1)
      expectAccepted(await post(fromFile, collection([payload()], "delta")), 1)
      expectAccepted(await post(fromFile, collection([payload()], "gamma"), { authorization: "Bearer delta" }), 1)
    })

    it("401 for other tokens, in the body or the header", async () => {
      const secret = marker("file")
      expectError(
        await rejectedAs(fromFile, ["unauthorized"], () => post(fromFile, collection([payload()], secret))),
        401,
        [secret]
      )
      expectError(await rejectedAs(fromFile, ["unauthorized"], () => post(fromFile, collection([payload()], "alpha"))), 401)
      expectError(
        await rejectedAs(fromFile, ["unauthorized"], () =>
          post(fromFile, collection([payload()], "gamma"), { authorization: `Bearer ${secret}` })),
        401,
        [secret]
      )
    })
  })
})

// ---------------------------------------------------------------------------------------------

describe("408 Request Timeout (REQUEST_TIMEOUT_MS=1000)", () => {
  let slow: RunningService

  beforeAll(async () => {
    slow = await startService({ REQUEST_TIMEOUT_MS: "1000" })
  })
  afterAll(async () => {
    await stopService(slow)
  })

  it("answers HTTP/1.1 408 on the socket for a body that never completes, and for headers that never end", async () => {
    const bodySecret = marker("slowbody")
    const headSecret = marker("slowhead")
    const partialBody = `POST /v1/payloads HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
      `Content-Length: 100\r\n\r\n{"version":"1","token":"${bodySecret}"`
    const partialHead = `POST /v1/payloads HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Marker: ${headSecret}\r\n`
    const [body, head] = await rejectedAs(
      slow,
      ["timeout"],
      () => Promise.all([rawExchange(slow.port, partialBody, 3_000), rawExchange(slow.port, partialHead, 3_000)]),
      2
    )
    expectRawJsonError(body, 408, [bodySecret])
    expectRawJsonError(head, 408, [headSecret])
    // It was the deadline (1 s, checked about every second), not an immediate refusal.
    expect(body!.elapsedMs).toBeGreaterThanOrEqual(900)
    expect(body!.elapsedMs).toBeLessThanOrEqual(3_000)
    expect(await metric(slow, "s3ingest_requests_rejected_total", { reason: "timeout" })).toBeGreaterThanOrEqual(2)
    expect(await metric(slow, "s3ingest_payloads_accepted_total")).toBe(0)
  })

  it("a request that arrives in time is still accepted", async () => {
    expectAccepted(await post(slow, collection([{ id: marker("intime") }])), 1)
  })
})

// ---------------------------------------------------------------------------------------------

describe("503 queue full, all-or-nothing (STORAGE=s3 against a store that never answers)", () => {
  let hanging: Server
  const held = new Set<Socket>()
  let endpoint: string

  const hangingEnv = (extra: Readonly<Record<string, string>>) => ({
    STORAGE: "s3",
    S3_BUCKET: "b",
    S3_ENDPOINT: endpoint,
    S3_FORCE_PATH_STYLE: "true",
    AWS_ACCESS_KEY_ID: "x",
    AWS_SECRET_ACCESS_KEY: "x",
    UPLOAD_TIMEOUT_MS: "60000",
    BATCH_MAX_WAIT_MS: "0",
    MAX_WORKERS: "1",
    ...extra
  })

  beforeAll(async () => {
    hanging = createServer((socket) => {
      held.add(socket)
      socket.on("error", () => undefined)
      socket.on("close", () => held.delete(socket))
    })
    await new Promise<void>((resolve) => hanging.listen(0, "127.0.0.1", resolve))
    const address = hanging.address()
    endpoint = `http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`
  })
  afterAll(async () => {
    for (const socket of held) socket.destroy()
    await new Promise<void>((resolve) => hanging.close(() => resolve()))
  })

  const ids = (label: string, n: number) => Array.from({ length: n }, () => marker(label))
  const body = (list: ReadonlyArray<string>) => collection(list.map((id) => ({ id })))
  /** Encoded size of each payload line, without its "\n". */
  const lineBytes = (list: ReadonlyArray<string>) => list.map((id) => Buffer.byteLength(JSON.stringify({ id })))
  const sum = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0)

  /** Admits one payload and waits until the single worker holds it in a hanging upload. */
  const occupyWorker = async (service: RunningService, id: string) => {
    expectAccepted(await post(service, body([id])), 1)
    await waitFor("the worker to take the first payload", async () => {
      const text = await scrape(service)
      return sampleValue(text, "s3ingest_payloads_in_flight") === 1 && sampleValue(text, "s3ingest_queue_payloads") === 0
        ? true
        : undefined
    })
  }

  describe("MAX_QUEUE=5", () => {
    let full: RunningService
    const admitted: Array<string> = []
    const admittedBytes: Array<number> = []

    beforeAll(async () => {
      // Memory durability: the draining case below checks the dead-lettering at shutdown.
      full = await startService(hangingEnv({ MAX_QUEUE: "5", SHUTDOWN_TIMEOUT_MS: "3000", DURABILITY: "memory" }))
    })
    afterAll(async () => {
      await stopService(full, "SIGKILL")
    })

    const admit = async (list: ReadonlyArray<string>) => {
      expectAccepted(await post(full, body(list)), list.length)
      admitted.push(...list)
      admittedBytes.push(...lineBytes(list))
    }

    const expectQueue = async (payloads: number) => {
      const text = await scrape(full)
      expect(sampleValue(text, "s3ingest_queue_payloads")).toBe(payloads)
      expect(sampleValue(text, "s3ingest_payloads_in_flight")).toBe(1)
      expect(sampleValue(text, "s3ingest_payloads_accepted_total")).toBe(admitted.length)
    }

    it("a collection that does not fit gets 503 + Retry-After and none of it is queued", async () => {
      const first = marker("inflight")
      await occupyWorker(full, first)
      admitted.push(first)
      await admit(ids("fits", 3))
      await expectQueue(3)

      const tooMany = ids("nofit", 3)
      const reply = await rejectedAs(full, ["queue_full"], () => post(full, body(tooMany)))
      expectError(reply, 503, tooMany)
      expectRetryAfter(reply)
      await expectQueue(3)
    })

    it("a smaller collection that fits is still admitted, up to exactly MAX_QUEUE", async () => {
      await admit(ids("fits", 2))
      await expectQueue(5)
      const text = await scrape(full)
      // The encoded bytes of exactly the 5 queued lines (with or without their "\n").
      expect([sum(admittedBytes), sum(admittedBytes) + admittedBytes.length]).toContain(
        sampleValue(text, "s3ingest_queue_bytes")
      )

      const one = ids("one", 1)
      const reply = await rejectedAs(full, ["queue_full"], () => post(full, body(one)))
      expectError(reply, 503, one)
      expectRetryAfter(reply)
      await expectQueue(5)
    })

    it("a collection larger than MAX_QUEUE gets 413, not 503", async () => {
      const six = ids("six", 6)
      const reply = await rejectedAs(full, ["too_many_payloads", "too_large"], () => post(full, body(six)))
      expectError(reply, 413, six)
      await expectQueue(5)
    })

    it("draining after SIGTERM: 503 + Retry-After + Connection: close, readyz 503; exit 1, all dead-lettered", async () => {
      full.child.kill("SIGTERM")
      await waitFor("readyz to turn 503", async () => ((await get(full, "/readyz")).status === 503 ? true : undefined))
      const secret = marker("draining")
      const [valid, wrongType] = await rejectedAs(full, ["draining"], () =>
        Promise.all([
          post(full, collection([{ id: secret }], secret)),
          // 503 draining precedes 415
          call(full, { body: collection([{ id: secret }], secret), headers: { "content-type": "text/plain" } })
        ]), 2)
      for (const reply of [valid, wrongType]) {
        expectError(reply, 503, [secret])
        expectRetryAfter(reply)
        expect(reply.headers.connection).toBe("close")
      }
      // 405 precedes 503 draining
      const wrongMethod = await get(full, "/v1/payloads")
      expectError(wrongMethod, 405)
      expect(wrongMethod.headers.connection).toBe("close")
      const health = await get(full, "/healthz")
      expect(health.status).toBe(200)

      // SHUTDOWN_TIMEOUT_MS=3000 bounds signal → exit even though the store never answers.
      const exit = await Promise.race([
        full.exited,
        new Promise<"still running">((resolve) => setTimeout(() => resolve("still running"), 6_000))
      ])
      expect(exit, "exit code within 6 s of SIGTERM (SHUTDOWN_TIMEOUT_MS=3000)").toBe(1)
      const deadLetters = listFiles(join(full.dataDir, "dead-letter"))
      const lines = deadLetters.flatMap((file) =>
        linesOf(ndjsonText(file, readFileSync(join(full.dataDir, "dead-letter", file))))
      )
      expect(lines.map(idOf).sort()).toEqual([...admitted].sort())
      // The key below its prefix: date directories, then the file name.
      for (const file of deadLetters) expect(file).toMatch(/^\d{4}\/\d{2}\/\d{2}\/\d{2}\/\d{8}T\d{9}Z-[0-9a-f]{8}-\d{8}\.ndjson\.gz$/)
      const summary = full.logs.find((line: LogLine) => line.message === "shutdown")
      expect(summary).toMatchObject({ accepted: 6, stored: 0, deadLettered: 6, lost: 0 })
    })
  })

  describe("MAX_QUEUE_BYTES=200", () => {
    let bytes: RunningService

    beforeAll(async () => {
      bytes = await startService(hangingEnv({ MAX_QUEUE_BYTES: "200" }))
    })
    afterAll(async () => {
      await stopService(bytes, "SIGKILL")
    })

    /** n payloads whose encoded line (JSON + "\n") is `size` bytes each. */
    const sized = (n: number, size: number) =>
      Array.from({ length: n }, () => {
        const id = marker("b")
        const base = Buffer.byteLength(JSON.stringify({ id, p: "" })) + 1
        return { id, p: "p".repeat(size - base) }
      })

    it("collections that exceed the remaining bytes get 503; smaller ones are admitted", async () => {
      await occupyWorker(bytes, marker("inflight"))
      const a = sized(3, 40) // 120 bytes (117 without the newlines)
      expectAccepted(await post(bytes, collection(a)), 3)
      const queued = async () => {
        const text = await scrape(bytes)
        return { payloads: sampleValue(text, "s3ingest_queue_payloads"), bytes: sampleValue(text, "s3ingest_queue_bytes") }
      }
      expect(await queued()).toEqual({ payloads: 3, bytes: expect.any(Number) })
      const afterA = (await queued()).bytes!
      expect([117, 120]).toContain(afterA)

      const b = sized(2, 50) // 100 bytes: 217–220 > 200
      const reply = await rejectedAs(bytes, ["queue_full"], () => post(bytes, collection(b)))
      expectError(reply, 503, b.map((p) => p.id))
      expectRetryAfter(reply)
      expect(await queued()).toEqual({ payloads: 3, bytes: afterA })

      const c = sized(2, 30) // 60 bytes: 175–180 ≤ 200
      expectAccepted(await post(bytes, collection(c)), 2)
      const afterC = (await queued()).bytes!
      expect([175, 180]).toContain(afterC)

      const d = sized(1, 30) // 30 bytes: 204–210 > 200
      const again = await rejectedAs(bytes, ["queue_full"], () => post(bytes, collection(d)))
      expectError(again, 503, [d[0]!.id])
      expectRetryAfter(again)
      expect(await queued()).toEqual({ payloads: 5, bytes: afterC })
      expect(await metric(bytes, "s3ingest_payloads_accepted_total")).toBe(6)
    })
  })
})

// ---------------------------------------------------------------------------------------------

describe("precedence when several answers apply", () => {
  let both: RunningService

  beforeAll(async () => {
    both = await startService({ INGEST_TOKENS: "alpha", MAX_BODY_BYTES: "1024", MAX_PAYLOADS_PER_REQUEST: "2" })
  })
  afterAll(async () => {
    await stopService(both)
  })

  const big = (token: string) => sizedCollection(4096, marker("big"), token)

  it("404 before 405: wrong method on an unknown path", async () => {
    expectError(await rejectedAs(both, ["not_found"], () => call(both, { method: "DELETE", path: "/nope" })), 404)
    expectError(await rejectedAs(both, ["not_found"], () => call(both, { method: "GET", path: "/v1/payload" })), 404)
  })

  it("405 before 415, 413 and 401: GET /v1/payloads with a bad content-type, a big body and a bad bearer", async () => {
    const reply = await rejectedAs(both, ["method_not_allowed"], () =>
      call(both, {
        method: "GET",
        body: big("wrong"),
        headers: { "content-type": "text/plain", authorization: "Bearer wrong" }
      }))
    expectError(reply, 405)
    expect(reply.headers.allow).toBe("POST")
  })

  it("415 before 413 declared: bad content-type or encoding with an oversized body", async () => {
    expectError(
      await rejectedAs(both, ["unsupported_media_type"], () =>
        call(both, { body: big("alpha"), headers: { "content-type": "text/plain", authorization: "Bearer wrong" } })),
      415
    )
    expectError(
      await rejectedAs(both, ["unsupported_encoding"], () =>
        post(both, big("alpha"), { "content-encoding": "br", authorization: "Bearer wrong" })),
      415
    )
  })

  it("413 declared before 401 header: oversized declared body with a bad bearer", async () => {
    const secret = marker("bigbearer")
    expectError(
      await rejectedAs(both, ["too_large"], () => post(both, big(secret), { authorization: `Bearer ${secret}` })),
      413,
      [secret]
    )
  })

  it("401 header before 408: a bad bearer is refused at once even though the body never comes", async () => {
    const head = `POST /v1/payloads HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
      `Content-Length: 500\r\nAuthorization: Bearer wrong\r\n\r\n{"version":"1"`
    expectRawJsonError(await rejectedAs(both, ["unauthorized"], () => rawExchange(both.port, head, 3_000)), 401, [])
  })

  it("413 streamed before 400 and 401 body: a chunked oversized body with a bad token", async () => {
    const secret = marker("streamed")
    const chunk = Buffer.from(sizedCollection(4096, secret, secret))
    const outcome = await postChunked(both, [chunk.subarray(0, 1000), chunk.subarray(1000, 2000), chunk.subarray(2000)])
    if (outcome._tag === "Reply") expectError(outcome.reply, 413, [secret])
    else expect(["ECONNRESET", "EPIPE"]).toContain(outcome.code)
  })

  it("401 header before 400: malformed body with a bad bearer → 401; without header → 400", async () => {
    expectError(
      await rejectedAs(both, ["unauthorized"], () => post(both, "{not json", { authorization: "Bearer wrong" })),
      401
    )
    expectError(await rejectedAs(both, ["invalid_json", "invalid_shape"], () => post(both, "{not json")), 400)
  })

  it("400 before 401 body: an invalid shape with a bad body token → 400", async () => {
    const secret = marker("shape")
    expectError(
      await rejectedAs(both, ["invalid_json", "invalid_shape"], () =>
        post(both, JSON.stringify({ version: "", token: secret, data: [{ id: 1 }] }))),
      400,
      [secret]
    )
  })

  it("401 body before 413 payload count: too many payloads with a bad body token → 401", async () => {
    const secret = marker("count")
    const data = [{ id: 1 }, { id: 2 }, { id: 3 }]
    expectError(
      await rejectedAs(both, ["unauthorized"], () => post(both, collection(data, secret))),
      401,
      [secret]
    )
    expectError(await rejectedAs(both, ["too_many_payloads"], () => post(both, collection(data, "alpha"))), 413)
    expectAccepted(await post(both, collection(data.slice(0, 2), "alpha")), 2)
  })
})

// ---------------------------------------------------------------------------------------------

describe("CLI and configuration", () => {
  const DEFAULTS: ReadonlyArray<readonly [variable: string, defaultValue: string | undefined]> = [
    ["HOST", "0.0.0.0"],
    ["PORT", "8080"],
    ["MAX_WORKERS", "16"],
    ["MAX_QUEUE", "100000"],
    ["MAX_QUEUE_BYTES", "67108864"],
    ["MAX_PAYLOADS_PER_REQUEST", "10000"],
    ["BATCH_MAX_ITEMS", "1000"],
    ["BATCH_MAX_BYTES", "8388608"],
    ["BATCH_MAX_WAIT_MS", "200"],
    ["MAX_BODY_BYTES", "1048576"],
    ["MAX_JSON_DEPTH", "64"],
    ["REQUEST_TIMEOUT_MS", "10000"],
    ["KEEP_ALIVE_TIMEOUT_MS", "65000"],
    ["UPLOAD_TIMEOUT_MS", "10000"],
    ["UPLOAD_RETRIES", "5"],
    ["BREAKER_FAILURES", "5"],
    ["BREAKER_COOLDOWN_MS", "1000"],
    ["SHED_HIGH_WATER", "0.8"],
    ["SHUTDOWN_TIMEOUT_MS", "25000"],
    ["SHUTDOWN_DELAY_MS", "0"],
    ["STORAGE", "local"],
    ["OBJECT_COMPRESSION", "gzip"],
    ["OBJECT_COMPRESSION_LEVEL", "3"],
    ["KEY_PARTITIONS", "{yyyy}/{mm}/{dd}/{hh}"],
    ["MAX_PARTITIONS", "64"],
    ["JSON_PROFILE", "i-json"],
    ["DATA_DIR", "./data"],
    ["S3_BUCKET", undefined],
    ["S3_PREFIX", "payloads"],
    ["S3_REGION", "us-east-1"],
    ["S3_ENDPOINT", undefined],
    ["S3_FORCE_PATH_STYLE", "false"],
    ["S3_CHECKSUM", undefined],
    ["INGEST_TOKENS", undefined],
    ["INGEST_TOKENS_FILE", undefined],
    ["STORE_FAULTS", undefined],
    ["LOG_LEVEL", "info"]
  ]
  const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

  it("--help exits 0 and lists every variable of §5 with its default", async () => {
    const result = await runCli(["--help"], {})
    expect(result.code).toBe(0)
    const lines = result.stdout.split("\n")
    for (const [variable, defaultValue] of DEFAULTS) {
      const line = lines.find((l) => new RegExp(`(^|\\s)${variable}(\\s|/|,|$)`).test(l))
      expect(line, `${variable} in --help`).toBeDefined()
      if (defaultValue !== undefined) {
        expect(line, `${variable} default ${defaultValue}`).toMatch(new RegExp(`(^|[\\s(,])${escape(defaultValue)}([\\s),]|$)`))
      }
    }
  })

  interface BadConfig {
    readonly name: string
    readonly env: Readonly<Record<string, string>>
    readonly args?: ReadonlyArray<string>
    readonly variable: string
  }

  const bad: ReadonlyArray<BadConfig> = [
    { name: "MAX_WORKERS=0", env: { MAX_WORKERS: "0" }, variable: "MAX_WORKERS" },
    { name: "MAX_QUEUE=abc", env: { MAX_QUEUE: "abc" }, variable: "MAX_QUEUE" },
    { name: "BATCH_MAX_WAIT_MS=-1", env: { BATCH_MAX_WAIT_MS: "-1" }, variable: "BATCH_MAX_WAIT_MS" },
    { name: "STORAGE=bogus", env: { STORAGE: "bogus" }, variable: "STORAGE" },
    { name: "SHED_HIGH_WATER=1.5", env: { SHED_HIGH_WATER: "1.5" }, variable: "SHED_HIGH_WATER" },
    { name: "SHED_HIGH_WATER=0", env: { SHED_HIGH_WATER: "0" }, variable: "SHED_HIGH_WATER" },
    { name: "STORAGE=s3 without S3_BUCKET", env: { STORAGE: "s3" }, variable: "S3_BUCKET" },
    { name: "--max-workers=0 over MAX_WORKERS=4", env: { MAX_WORKERS: "4" }, args: ["--max-workers=0"], variable: "MAX_WORKERS" },
    { name: "--max-workers 0 over MAX_WORKERS=4", env: { MAX_WORKERS: "4" }, args: ["--max-workers", "0"], variable: "MAX_WORKERS" },
    { name: "--max-workers=abc over MAX_WORKERS=4", env: { MAX_WORKERS: "4" }, args: ["--max-workers=abc"], variable: "MAX_WORKERS" }
  ]

  it.each(bad)("$name: exit 1 with one stderr line naming $variable", async ({ args = [], env, variable }) => {
    const dataDir = tempDir("cli")
    const result = await runCli(["service", ...args], { HOST: "127.0.0.1", PORT: "0", DATA_DIR: dataDir, ...env })
    expect(result.started, `the service started: ${result.stdout}`).toBe(false)
    expect(result.code).toBe(1)
    const lines = result.stderr.split("\n").filter((line) => line.trim() !== "")
    expect(lines).toHaveLength(1)
    expect(lines[0]).toContain(variable)
  })

  describe("a flag overrides the environment", () => {
    let child: ChildProcess | undefined

    afterAll(() => {
      if (child !== undefined && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
    })

    it("MAX_WORKERS=0 with --max-workers 2 --port <free> starts with workers: 2 on that port", async () => {
      const port = await freePort()
      const dataDir = tempDir("flag")
      const proc = spawn(process.execPath, [MAIN, "service", "--max-workers", "2", "--port", String(port)], {
        env: { PATH: process.env.PATH ?? "", HOST: "127.0.0.1", MAX_WORKERS: "0", DATA_DIR: dataDir },
        stdio: ["ignore", "pipe", "pipe"]
      })
      child = proc
      let stdout = ""
      let stderr = ""
      proc.stdout.setEncoding("utf8").on("data", (chunk: string) => {
        stdout += chunk
      })
      proc.stderr.setEncoding("utf8").on("data", (chunk: string) => {
        stderr += chunk
      })
      const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)))
      const listening = await waitFor("the listening log line", () => {
        if (proc.exitCode !== null) throw new Error(`exited ${proc.exitCode}: ${stderr}`)
        const line = stdout.split("\n").find((l) => l.includes(`"message":"listening"`))
        return line === undefined ? undefined : (JSON.parse(line) as LogLine)
      }, 10_000)
      expect(listening.workers).toBe(2)
      expect(listening.port).toBe(port)
      const health = await get({ port }, "/healthz")
      expect(health.status).toBe(200)
      proc.kill("SIGTERM")
      expect(await exited).toBe(0)
    })
  })
})
