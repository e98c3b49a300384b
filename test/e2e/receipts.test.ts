/**
 * Delivery receipts end to end: `POST /v1/payloads?ack=stored` answers 200 with the keys of the
 * objects holding the collection once the store confirmed them all, on the local store and on S3
 * (s3rver); 202 when the receipt cannot be given (ACK_TIMEOUT_MS, a dead letter, a drain); and a
 * bad `ack` is a 400 from the headers alone, before the body is read.
 */
import { randomUUID } from "node:crypto"
import { existsSync, readFileSync, rmSync } from "node:fs"
import { join } from "node:path"
import type { S3Client } from "@aws-sdk/client-s3"
import { afterAll, afterEach, describe, expect, inject, it } from "vitest"
import { call, postJsonTo, type Reply } from "../support/http.js"
import { metricsText, metricValue } from "../support/metrics.js"
import { rawExchange } from "../support/rawHttp.js"
import { getObject, makeTestS3Client } from "../support/s3.js"
import { ndjsonText, readLines, type RunningService, s3rverEnv, startService } from "../support/service.js"
import { linesInBucket } from "../support/storedLines.js"
import { waitFor } from "../support/wait.js"

const s3Endpoint = inject("s3Endpoint")
const s3Bucket = inject("s3Bucket")
const runId = randomUUID().slice(0, 8)

const STORED = "/v1/payloads?ack=stored"
const REQUESTS = 6
const PER_REQUEST = 5
/** Small batches: one collection spreads over at least three objects. */
const BATCHING = { BATCH_MAX_ITEMS: "2", BATCH_MAX_WAIT_MS: "50" }

const idsFor = (label: string, request: number, count = PER_REQUEST): Array<string> =>
  Array.from({ length: count }, (_, i) => `${runId}-${label}-${request}-${i}`)
const bodyOf = (ids: ReadonlyArray<string>): string =>
  JSON.stringify({ version: "1", token: "t", data: ids.map((id, index) => ({ id, index })) })
const idsInText = (text: string): Array<string> =>
  text.split("\n").filter((line) => line !== "").map((line) => String((JSON.parse(line) as { id: unknown }).id))
const sorted = (ids: ReadonlyArray<string>): Array<string> => [...ids].sort()

interface StoredReceipt {
  readonly accepted: number
  readonly stored: number
  readonly keys: ReadonlyArray<string>
}

const receiptOf = (reply: Reply): StoredReceipt => {
  expect(reply.status, reply.text).toBe(200)
  const parsed = JSON.parse(reply.text) as Record<string, unknown>
  expect(Object.keys(parsed).sort()).toEqual(["accepted", "keys", "stored"])
  const { accepted, keys, stored } = parsed
  if (typeof accepted !== "number" || typeof stored !== "number" || !Array.isArray(keys)) {
    throw new Error(`not a receipt: ${reply.text}`)
  }
  expect(keys.every((key) => typeof key === "string"), reply.text).toBe(true)
  return { accepted, stored, keys: keys.map(String) }
}

/** A 202 whose body is exactly `{"accepted":count}`: no receipt. */
const expectAcceptedOnly = (reply: Reply, count: number) => {
  expect(reply.status, reply.text).toBe(202)
  expect(JSON.parse(reply.text)).toEqual({ accepted: count })
}

const running: Array<RunningService> = []
const dataDirs: Array<string> = []
let client: S3Client | undefined

const start = async (env: Record<string, string>): Promise<RunningService> => {
  const service = await startService(env)
  running.push(service)
  dataDirs.push(service.dataDir)
  return service
}

afterEach(async () => {
  // A failed assertion must not leave a child running.
  for (const service of running.splice(0)) await service.stop("SIGKILL")
})
afterAll(() => {
  client?.destroy()
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true })
})

/** What the oracle reads of a store. */
interface StoreReader {
  /** The ids in the object at `key`; fails when there is no such object. */
  readonly idsAt: (key: string) => Promise<Array<string>>
  /** Every id the store holds (for this test). */
  readonly allIds: () => Promise<Array<string>>
}

/**
 * Concurrent `?ack=stored` requests of 5 payloads each: every answer is 200 with accepted = stored
 * = 5 and keys whose objects together hold exactly that request's ids (each key at least one of
 * them), and the store holds every id exactly once.
 */
const expectReceiptsHold = async (service: RunningService, label: string, prefix: string, store: StoreReader) => {
  const requests = Array.from({ length: REQUESTS }, (_, r) => idsFor(label, r))
  const replies = await Promise.all(requests.map((ids) => postJsonTo(service.port, bodyOf(ids), { path: STORED })))
  const objects = new Map<string, Array<string>>()
  for (const [r, reply] of replies.entries()) {
    const receipt = receiptOf(reply)
    expect(receipt).toMatchObject({ accepted: PER_REQUEST, stored: PER_REQUEST })
    // BATCH_MAX_ITEMS=2: five payloads take at least three objects.
    expect(receipt.keys.length, reply.text).toBeGreaterThanOrEqual(3)
    expect(new Set(receipt.keys).size, reply.text).toBe(receipt.keys.length)
    const ids = requests[r]!
    const held: Array<string> = []
    for (const key of receipt.keys) {
      expect(key.startsWith(`${prefix}/`), key).toBe(true)
      const inObject = objects.get(key) ?? await store.idsAt(key)
      objects.set(key, inObject)
      const mine = inObject.filter((id) => ids.includes(id))
      expect(mine.length, `${key} holds none of request ${r}'s payloads`).toBeGreaterThan(0)
      held.push(...mine)
    }
    expect(sorted(held), `request ${r}'s ids across its keys`).toEqual(sorted(ids))
  }
  expect(sorted(await store.allIds()), "every id exactly once in the store").toEqual(sorted(requests.flat()))
  expect(await service.stop("SIGTERM"), service.stderr()).toBe(0)
}

describe("?ack=stored: 200 with the keys once every payload is stored", () => {
  it("local store (gzip objects under DATA_DIR/objects/{key})", async () => {
    const service = await start(BATCHING)
    const objectsDir = join(service.dataDir, "objects")
    await expectReceiptsHold(service, "local", "payloads", {
      idsAt: (key) => {
        expect(key.endsWith(".ndjson.gz"), key).toBe(true)
        const path = join(objectsDir, key)
        expect(existsSync(path), `object ${key} at ${path}`).toBe(true)
        return Promise.resolve(idsInText(ndjsonText(key, readFileSync(path))))
      },
      allIds: () => Promise.resolve(readLines(objectsDir).map((line) => String(line.id)))
    })
  }, 30_000)

  it("S3 (s3rver), keys under S3_PREFIX", async () => {
    const s3 = client ??= makeTestS3Client(s3Endpoint)
    const prefix = `receipts-${runId}`
    const service = await start({ ...s3rverEnv(s3Endpoint, s3Bucket, prefix), ...BATCHING })
    await expectReceiptsHold(service, "s3", prefix, {
      idsAt: async (key) => {
        const object = await getObject(s3, s3Bucket, key)
        expect(object.contentEncoding, key).toBe("gzip")
        return idsInText(ndjsonText(key, object.body))
      },
      allIds: async () => (await linesInBucket(s3, s3Bucket, prefix)).flatMap((found) => idsInText(found.line))
    })
  }, 30_000)
})

describe("?ack=stored: 202 when no receipt can be given", () => {
  it("a store that never answers: 202 after ACK_TIMEOUT_MS", async () => {
    const service = await start({ STORE_FAULTS: "hang=1", ACK_TIMEOUT_MS: "700", UPLOAD_TIMEOUT_MS: "60000" })
    const ids = idsFor("hang", 0, 3)
    const sentAt = Date.now()
    const reply = await postJsonTo(service.port, bodyOf(ids), { path: STORED })
    const elapsed = Date.now() - sentAt
    expectAcceptedOnly(reply, 3)
    expect(elapsed).toBeGreaterThanOrEqual(600)
    expect(elapsed).toBeLessThan(5_000)
    expect(readLines(join(service.dataDir, "objects"))).toEqual([])
  }, 20_000)

  it("a permanent store error: 202 well before ACK_TIMEOUT_MS, the payloads dead-lettered", async () => {
    // One batch holds the collection: after its dead letter the breaker is open and a second
    // batch would wait behind it (the receipt is given up at the first dead letter either way).
    const service = await start({ STORE_FAULTS: "error=1:AccessDenied", ACK_TIMEOUT_MS: "20000", BATCH_MAX_WAIT_MS: "50" })
    const ids = idsFor("denied", 0)
    const sentAt = Date.now()
    const reply = await postJsonTo(service.port, bodyOf(ids), { path: STORED })
    expect(Date.now() - sentAt).toBeLessThan(10_000)
    expectAcceptedOnly(reply, PER_REQUEST)
    const deadLetter = join(service.dataDir, "dead-letter")
    const dead = await waitFor("every payload dead-lettered", () => {
      const found = readLines(deadLetter).map((line) => String(line.id))
      return found.length >= ids.length ? found : undefined
    }, 5_000)
    expect(sorted(dead)).toEqual(sorted(ids))
    expect(readLines(join(service.dataDir, "objects"))).toEqual([])
  }, 20_000)

  it("SIGTERM: every waiting request is answered 202 before the process exits", async () => {
    const service = await start({
      STORE_FAULTS: "hang=1",
      ACK_TIMEOUT_MS: "60000",
      UPLOAD_TIMEOUT_MS: "60000",
      SHUTDOWN_TIMEOUT_MS: "3000",
      BATCH_MAX_WAIT_MS: "0"
    })
    const { port } = service
    const requests = Array.from({ length: 3 }, (_, r) => idsFor("drain", r))
    let answered = 0
    const outcomes = requests.map((ids) =>
      postJsonTo(port, bodyOf(ids), { path: STORED }).then(
        (reply) => ({ reply, error: undefined, at: Date.now() }),
        (error: NodeJS.ErrnoException) => ({ reply: undefined, error: error.code ?? error.message, at: Date.now() })
      ).finally(() => void answered++)
    )
    await waitFor("all 15 payloads accepted", async () =>
      metricValue(await metricsText(port), "s3ingest_payloads_accepted_total") >= 15 || undefined)
    expect(answered, "no request answered before the signal").toBe(0)

    const signalledAt = Date.now()
    service.child.kill("SIGTERM")
    // While the drain waits for the hanging store, intake is closed (503 before the body)...
    await waitFor("intake closed", async () =>
      (await call(port, { headers: { "content-type": "text/plain" }, body: "x" })).status === 503 || undefined, 2_500)
    // ...and a bad `ack` is still a 400: it comes before the 503.
    const bogus = await call(port, { path: "/v1/payloads?ack=bogus", headers: { "content-type": "text/plain" }, body: "x" })
    expect(bogus.status, bogus.text).toBe(400)

    const [results, code] = await Promise.all([Promise.all(outcomes), service.exited])
    for (const [r, result] of results.entries()) {
      // A dead process answers nothing: a 202 here was written while the service ran.
      expect(result.error, `request ${r}`).toBeUndefined()
      if (result.reply !== undefined) expectAcceptedOnly(result.reply, PER_REQUEST)
      expect(result.at).toBeGreaterThanOrEqual(signalledAt)
    }
    expect(Date.now() - signalledAt).toBeLessThan(3_000 + 3_000)
    // The store took nothing: the journal keeps every payload for the next start.
    expect(code, service.stderr()).toBe(1)
    expect(service.logs.find((line) => line.message === "shutdown")).toMatchObject({
      accepted: 15,
      stored: 0,
      journaled: 15,
      lost: 0
    })
    const order = service.logs.map((line) => line.message).filter((m) =>
      ["draining", "drain budget spent", "listener closed", "shutdown"].includes(m)
    )
    expect(order).toEqual(["draining", "drain budget spent", "listener closed", "shutdown"])
  }, 30_000)
})

describe("the ack parameter", () => {
  it("a bad ack is a 400 from the headers alone, before the body is read", async () => {
    const service = await start({})
    const { port } = service
    const rejected = async (reason: string) =>
      metricValue(await metricsText(port), "s3ingest_requests_rejected_total", { reason })

    // A body of 1000 bytes is announced and never sent: the answer cannot wait for it.
    const answer = await rawExchange(
      port,
      "POST /v1/payloads?ack=bogus HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
        "Content-Length: 1000\r\n\r\n"
    )
    expect(answer.statusLine).toMatch(/^HTTP\/1\.1 400 /)
    expect(answer.headers["content-type"]).toMatch(/^application\/json/)
    expect(JSON.parse(answer.body)).toEqual({ error: expect.any(String) })
    expect(await rejected("invalid_query")).toBe(1)

    const body = bodyOf(idsFor("query", 0, 2))
    for (const query of ["ack=stored&ack=stored", "ack=stored&ack=accepted", "ack=", "ack=STORED"]) {
      const reply = await postJsonTo(port, body, { path: `/v1/payloads?${query}` })
      expect(reply.status, `?${query}: ${reply.text}`).toBe(400)
      expect(JSON.parse(reply.text), `?${query}`).toEqual({ error: expect.any(String) })
    }
    expect(await rejected("invalid_query")).toBe(5)
    // The 400 comes before the content type's 415.
    const textPlain = await call(port, { path: "/v1/payloads?ack=bogus", headers: { "content-type": "text/plain" }, body })
    expect(textPlain.status, textPlain.text).toBe(400)
    expect(await rejected("invalid_query")).toBe(6)

    // 404 and 405 come before it.
    const get = await call(port, { method: "GET", path: "/v1/payloads?ack=bogus" })
    expect(get.status, get.text).toBe(405)
    expect(get.headers.allow).toBe("POST")
    const elsewhere = await postJsonTo(port, body, { path: "/v1/payload?ack=bogus" })
    expect(elsewhere.status, elsewhere.text).toBe(404)
    const text = await metricsText(port)
    expect(metricValue(text, "s3ingest_requests_rejected_total", { reason: "invalid_query" })).toBe(6)
    expect(metricValue(text, "s3ingest_requests_rejected_total", { reason: "method_not_allowed" })).toBe(1)
    expect(metricValue(text, "s3ingest_requests_rejected_total", { reason: "not_found" })).toBe(1)
    expect(metricValue(text, "s3ingest_payloads_accepted_total")).toBe(0)
  }, 20_000)

  it("?ack=accepted and no ack: the usual 202 without keys", async () => {
    const service = await start({ BATCH_MAX_WAIT_MS: "50" })
    const plain = idsFor("plain", 0, 2)
    const explicit = idsFor("accepted", 0, 3)
    expectAcceptedOnly(await postJsonTo(service.port, bodyOf(plain)), 2)
    expectAcceptedOnly(await postJsonTo(service.port, bodyOf(explicit), { path: "/v1/payloads?ack=accepted" }), 3)
    const objectsDir = join(service.dataDir, "objects")
    const stored = await waitFor("the payloads stored", () => {
      const ids = readLines(objectsDir).map((line) => String(line.id))
      return ids.length >= 5 ? ids : undefined
    }, 5_000)
    expect(sorted(stored)).toEqual(sorted([...plain, ...explicit]))
  }, 20_000)
})
