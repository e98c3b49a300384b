/**
 * End to end with STORAGE=s3: the built service writes its batches to a real S3-compatible
 * server (s3rver on loopback), drains on SIGTERM, and every acknowledged payload is in exactly
 * one object under the documented key layout.
 */
import { randomUUID } from "node:crypto"
import { rmSync } from "node:fs"
import type { S3Client } from "@aws-sdk/client-s3"
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest"
import { type FaultProxy, startFaultProxy } from "../support/faultProxy.js"
import { getObject, listKeys, makeTestS3Client } from "../support/s3.js"
import { type LogLine, ndjsonText, postJson, type RunningService, s3rverEnv, startService } from "../support/service.js"

const s3Endpoint = inject("s3Endpoint")
const s3Bucket = inject("s3Bucket")

/** Unique per test run, so objects from other files and runs never count. */
const runId = randomUUID().slice(0, 8)

const COLLECTIONS = 6
const PER_COLLECTION = 9

interface Payload {
  readonly id: string
  readonly collection: number
  readonly index: number
  readonly text: string
  readonly nested: { readonly ok: boolean; readonly list: ReadonlyArray<number> }
}

const payloadsFor = (label: string): Array<Array<Payload>> =>
  Array.from({ length: COLLECTIONS }, (_, collection) =>
    Array.from({ length: PER_COLLECTION }, (_, index) => ({
      id: `${runId}-${label}-${collection}-${index}`,
      collection,
      index,
      text: `payload ${index} — ünïcödé ☃`,
      nested: { ok: index % 2 === 0, list: [collection, index] }
    })))

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/**
 * `{prefix}/yyyy/mm/dd/hh/yyyymmddTHHMMSSmmmZ-<8 hex>-<8 digits>.ndjson.gz`; an empty prefix means
 * the key starts at the year.
 */
const keyPattern = (prefix: string): RegExp =>
  new RegExp(
    `^${prefix === "" ? "" : `${escapeRegExp(prefix)}/`}` +
      String.raw`(\d{4})/(\d{2})/(\d{2})/(\d{2})/(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z-([0-9a-f]{8})-(\d{8})\.ndjson\.gz$`
  )

let client: S3Client
let running: RunningService | undefined
const dataDirs: Array<string> = []

beforeAll(() => {
  client = makeTestS3Client(s3Endpoint)
})
afterAll(() => {
  client.destroy()
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true })
})
afterEach(async () => {
  // A failed assertion must not leave the child running.
  if (running !== undefined) {
    await running.stop("SIGKILL")
    running = undefined
  }
})

const startS3Service = async (prefix: string): Promise<RunningService> => {
  running = await startService({
    ...s3rverEnv(s3Endpoint, s3Bucket, prefix),
    MAX_WORKERS: "4",
    // Small batches: one collection spreads over several objects, so "exactly once" is tested
    // across objects and not only inside one.
    BATCH_MAX_ITEMS: "4",
    BATCH_MAX_WAIT_MS: "50",
    SHUTDOWN_TIMEOUT_MS: "10000"
  })
  dataDirs.push(running.dataDir)
  return running
}

/** Posts every collection (each must be acknowledged with 202), SIGTERMs, checks the clean exit. */
const ingestAndStop = async (service: RunningService, collections: ReadonlyArray<ReadonlyArray<Payload>>) => {
  for (const data of collections) {
    const response = await postJson(service.url, { version: "1.4", token: "e2e", data })
    expect(response.status).toBe(202)
    expect(await response.json()).toEqual({ accepted: data.length })
  }
  const code = await service.stop("SIGTERM")
  running = undefined
  expect(code, service.stderr()).toBe(0)
  const shutdown = service.logs.filter((line: LogLine) => line.message === "shutdown")
  expect(shutdown).toHaveLength(1)
  const total = collections.reduce((n, data) => n + data.length, 0)
  expect(shutdown[0]).toMatchObject({ accepted: total, stored: total, deadLettered: 0, lost: 0 })
}

interface ParsedKey {
  readonly key: string
  readonly createdAt: number
  readonly instance: string
  readonly seq: number
}

/** Checks one key against the layout and returns what it encodes. */
const parseKey = (prefix: string, key: string): ParsedKey => {
  const m = keyPattern(prefix).exec(key)
  expect(m, `key ${key} does not follow the layout`).not.toBeNull()
  const [, yyyy, mm, dd, hh, sy, smo, sd, sh, smi, ss, sms, instance, seq] = m as RegExpExecArray
  // The directories repeat the stamp's date and hour.
  expect([yyyy, mm, dd, hh]).toEqual([sy, smo, sd, sh])
  const createdAt = Date.UTC(Number(sy), Number(smo) - 1, Number(sd), Number(sh), Number(smi), Number(ss), Number(sms))
  return { key, createdAt, instance: instance ?? "", seq: Number(seq) }
}

/** Reads every object, checks its content type and line format, and returns its payloads. */
const readObjects = async (keys: ReadonlyArray<string>) => {
  const lines: Array<Record<string, unknown>> = []
  for (const key of keys) {
    const object = await getObject(client, s3Bucket, key)
    expect(object.contentType, key).toBe("application/x-ndjson")
    expect(object.contentEncoding, key).toBe("gzip")
    const text = ndjsonText(key, object.body)
    expect(text.length, key).toBeGreaterThan(0)
    expect(text.endsWith("\n"), `${key} must end each line with \\n`).toBe(true)
    for (const line of text.slice(0, -1).split("\n")) lines.push(JSON.parse(line) as Record<string, unknown>)
  }
  return lines
}

/** Every sent payload appears exactly once, unchanged. */
const expectExactlyOnce = (
  sent: ReadonlyArray<ReadonlyArray<Payload>>,
  stored: ReadonlyArray<Record<string, unknown>>
) => {
  const counts = new Map<unknown, number>()
  for (const line of stored) counts.set(line.id, (counts.get(line.id) ?? 0) + 1)
  const all = sent.flat()
  const missing = all.filter((p) => !counts.has(p.id)).map((p) => p.id)
  const duplicated = [...counts].filter(([, n]) => n > 1).map(([id]) => id)
  expect(missing, "payloads acknowledged but not stored").toEqual([])
  expect(duplicated, "payloads stored more than once").toEqual([])
  expect(stored).toHaveLength(all.length)
  const byId = new Map(stored.map((line) => [line.id, line]))
  for (const payload of all) expect(byId.get(payload.id)).toEqual(payload)
}

/** Keys were decided by one process, once per batch, at times within the test. */
const expectKeysOfOneRun = (parsed: ReadonlyArray<ParsedKey>, startedAt: number, endedAt: number) => {
  expect(new Set(parsed.map((k) => k.instance)).size).toBe(1)
  expect(new Set(parsed.map((k) => k.seq)).size).toBe(parsed.length)
  for (const k of parsed) {
    expect(k.createdAt).toBeGreaterThanOrEqual(startedAt - 1_000)
    expect(k.createdAt).toBeLessThanOrEqual(endedAt + 1_000)
  }
}

describe("STORAGE=s3 end to end", () => {
  it("stores every acknowledged payload exactly once under {prefix}/yyyy/mm/dd/hh/", async () => {
    const prefix = `e2e-${runId}/s3-storage`
    const sent = payloadsFor("prefixed")
    const startedAt = Date.now()
    const service = await startS3Service(prefix)

    await ingestAndStop(service, sent)
    const endedAt = Date.now()

    const keys = await listKeys(client, s3Bucket, `${prefix}/`)
    // BATCH_MAX_ITEMS=4: at least ⌈54 / 4⌉ objects.
    expect(keys.length).toBeGreaterThanOrEqual(Math.ceil((COLLECTIONS * PER_COLLECTION) / 4))
    const parsed = keys.map((key) => parseKey(prefix, key))
    expectKeysOfOneRun(parsed, startedAt, endedAt)
    expectExactlyOnce(sent, await readObjects(keys))
  }, 30_000)

  it("with an empty S3_PREFIX, keys start at the year", async () => {
    const sent = payloadsFor("unprefixed")
    const startedAt = Date.now()
    const service = await startS3Service("")

    await ingestAndStop(service, sent)
    const endedAt = Date.now()

    // The objects of this case are those holding its ids; every one of them must sit at the root.
    const everything = await listKeys(client, s3Bucket, "")
    const mine: Array<string> = []
    for (const key of everything) {
      const text = ndjsonText(key, (await getObject(client, s3Bucket, key)).body)
      if (text.split("\n").some((line) => line.includes(`"id":"${runId}-unprefixed-`))) mine.push(key)
    }
    expect(mine.length).toBeGreaterThanOrEqual(Math.ceil((COLLECTIONS * PER_COLLECTION) / 4))
    for (const key of mine) expect(key).toMatch(/^\d{4}\//)
    const parsed = mine.map((key) => parseKey("", key))
    expectKeysOfOneRun(parsed, startedAt, endedAt)
    expectExactlyOnce(sent, await readObjects(mine))
  }, 30_000)
})

describe("object settings on every PUT", () => {
  const proxies: Array<FaultProxy> = []
  afterAll(async () => {
    for (const proxy of proxies) await proxy.close()
  })

  /** Runs a service through a recording proxy with `env`, stores one collection, returns its PUTs' headers. */
  const putHeaders = async (label: string, env: Record<string, string>) => {
    const proxy = await startFaultProxy(s3Endpoint, "pass")
    proxies.push(proxy)
    const prefix = `${runId}/settings-${label}`
    running = await startService({
      ...s3rverEnv(proxy.endpoint, s3Bucket, prefix),
      BATCH_MAX_WAIT_MS: "0",
      ...env
    })
    dataDirs.push(running.dataDir)
    await ingestAndStop(running, [[{ id: `${runId}-${label}`, collection: 0, index: 0, text: "t", nested: { ok: true, list: [] } }]])
    running = undefined
    expect(await listKeys(client, s3Bucket, `${prefix}/`)).toHaveLength(1)
    const puts = proxy.requests.filter((request) => request.method === "PUT")
    expect(puts).toHaveLength(1)
    return puts[0]!.headers
  }

  it("S3_SSE=AES256, S3_STORAGE_CLASS and S3_OBJECT_TAGS reach S3 as its headers", async () => {
    const headers = await putHeaders("aes", {
      S3_SSE: "AES256",
      S3_STORAGE_CLASS: "STANDARD_IA",
      S3_OBJECT_TAGS: "team=ingest&env=e2e test"
    })
    expect(headers["x-amz-server-side-encryption"]).toBe("AES256")
    expect(headers["x-amz-storage-class"]).toBe("STANDARD_IA")
    expect(headers["x-amz-tagging"]).toBe("team=ingest&env=e2e%20test")
    expect(headers["x-amz-server-side-encryption-aws-kms-key-id"]).toBeUndefined()
  }, 30_000)

  it("S3_SSE=aws:kms with S3_SSE_KMS_KEY_ID names the key; unset settings add no header", async () => {
    const kms = await putHeaders("kms", { S3_SSE: "aws:kms", S3_SSE_KMS_KEY_ID: "alias/ingest" })
    expect(kms["x-amz-server-side-encryption"]).toBe("aws:kms")
    expect(kms["x-amz-server-side-encryption-aws-kms-key-id"]).toBe("alias/ingest")
    const plain = await putHeaders("plain", {})
    for (const name of ["x-amz-server-side-encryption", "x-amz-storage-class", "x-amz-tagging"]) {
      expect(plain[name], name).toBeUndefined()
    }
  }, 30_000)
})
