/**
 * What an operator meets first, against the built service: start-up mistakes refused in one
 * stderr line, a DATA_DIR left by a crash, readiness that returns without traffic, and logs
 * that say what the service is doing (and nothing they should not).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { crc32 } from "node:zlib"
import { CreateBucketCommand, type S3Client } from "@aws-sdk/client-s3"
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest"
import { runCli } from "../support/cli.js"
import { startFaultProxy } from "../support/faultProxy.js"
import { getObject, listKeys, makeTestS3Client } from "../support/s3.js"
import {
  freePort,
  listFiles,
  type LogLine,
  MAIN,
  ndjsonText,
  postJson,
  type RunningService,
  s3rverEnv,
  startService
} from "../support/service.js"
import { waitFor } from "../support/wait.js"

const s3Endpoint = inject("s3Endpoint")
const s3Bucket = inject("s3Bucket")
const runId = randomUUID().slice(0, 8)

const tempDir = (label: string) => mkdtempSync(join(tmpdir(), `s3-ingest-operator-${label}-`))

const s3Env = (bucket: string, endpoint = s3Endpoint): Record<string, string> =>
  s3rverEnv(endpoint, bucket, runId)


const status = async (url: string, path: string) => (await fetch(`${url}${path}`)).status

const metric = async (url: string, name: string): Promise<number> => {
  const text = await (await fetch(`${url}/metrics`)).text()
  const line = text.split("\n").find((l) => l.startsWith(`${name} `))
  return line === undefined ? Number.NaN : Number(line.slice(name.length + 1))
}

let service: RunningService | undefined
const children: Array<ChildProcess> = []
afterEach(async () => {
  await service?.stop("SIGKILL")
  service = undefined
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
})

/** Runs `service` expecting a refused start: exit 1, one stderr line, no log line on stdout. */
const refusedStart = async (env: Record<string, string>, args: ReadonlyArray<string> = []) => {
  const run = runCli(["service", ...args], { HOST: "127.0.0.1", PORT: "0", ...env }, 15_000)
  const { code } = await run.exited
  expect(run.logs.map((line) => line.message), "nothing on stdout").toEqual([])
  expect(code).toBe(1)
  const lines = run.stderr().split("\n").filter((line) => line !== "")
  expect(lines, run.stderr()).toHaveLength(1)
  return lines[0]!
}

describe("start-up refusals: one stderr line, exit 1", () => {
  it("DATA_DIR=/proc/x stops at once instead of spinning", async () => {
    const line = await refusedStart({ DATA_DIR: "/proc/x" })
    expect(line).toMatch(/^s3-ingest: DATA_DIR \/proc\/x cannot be used: cannot create \/proc\/x \(ENOENT/)
  })

  it("a DATA_DIR that is a file, or under one, is named as such, not as a held lock", async () => {
    const file = join(tempDir("file"), "data")
    writeFileSync(file, "x")
    expect(await refusedStart({ DATA_DIR: file })).toBe(
      `s3-ingest: DATA_DIR ${file} cannot be used: ${file} is not a directory`
    )
    expect(await refusedStart({ DATA_DIR: join(file, "below") })).toBe(
      `s3-ingest: DATA_DIR ${join(file, "below")} cannot be used: ${file} is not a directory`
    )
  })

  it("a journal segment of an unknown format version stops the start, naming the segment", async () => {
    const dataDir = tempDir("journal")
    mkdirSync(join(dataDir, "journal"))
    // A well-formed header (magic, checksum) of format 9.
    const header = Buffer.alloc(16)
    header.writeUInt32LE(0x4a493353, 0)
    header.writeUInt16LE(9, 4)
    header.writeUInt32LE(crc32(header.subarray(0, 12)), 12)
    writeFileSync(join(dataDir, "journal", "0000000001.journal"), header)
    const line = await refusedStart({ DATA_DIR: dataDir })
    expect(line).toBe(
      `s3-ingest: journal ${join(dataDir, "journal", "0000000001.journal")} cannot be read: segment format 9; this version reads 1`
    )
  })

  it("a port in use: names the address, no shutdown summary, DATA_DIR untouched", async () => {
    const taken: Server = createServer()
    await new Promise<void>((done) => taken.listen(0, "127.0.0.1", done))
    const address = taken.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    const dataDir = join(tempDir("port"), "data")
    try {
      const line = await refusedStart({ DATA_DIR: dataDir, PORT: String(port) })
      expect(line).toMatch(new RegExp(`^s3-ingest: cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`))
      expect(existsSync(dataDir), "DATA_DIR created before the bind").toBe(false)
    } finally {
      taken.close()
    }
  })

  it.each([
    { name: "S3_ENDPOINT=notaurl", env: { S3_ENDPOINT: "notaurl" }, args: [], expected: /S3_ENDPOINT must be an http/ },
    { name: "MAX_WORKERS= (empty)", env: { MAX_WORKERS: "" }, args: [], expected: /MAX_WORKERS is empty/ },
    {
      name: "--max-workers without a value",
      env: {},
      args: ["--max-workers"],
      expected: /^s3-ingest: --max-workers needs a value/
    },
    {
      name: "--max-workers=0 names the flag",
      env: { MAX_WORKERS: "4" },
      args: ["--max-workers=0"],
      expected: /^s3-ingest: invalid configuration: --max-workers \(MAX_WORKERS\) must be an integer ≥ 1, got "0"$/
    },
    { name: "S3_SSE=aes", env: { S3_SSE: "aes" }, args: [], expected: /S3_SSE expected one of \(AES256, aws:kms\)/ },
    {
      name: "S3_SSE_KMS_KEY_ID without aws:kms",
      env: { S3_SSE: "AES256", S3_SSE_KMS_KEY_ID: "alias/x" },
      args: [],
      expected: /S3_SSE_KMS_KEY_ID is only used with S3_SSE=aws:kms/
    },
    { name: "S3_STORAGE_CLASS=COLD", env: { S3_STORAGE_CLASS: "COLD" }, args: [], expected: /S3_STORAGE_CLASS expected/ },
    {
      name: "S3_OBJECT_TAGS with 11 tags",
      env: { S3_OBJECT_TAGS: Array.from({ length: 11 }, (_, i) => `k${i}=v`).join("&") },
      args: [],
      expected: /S3_OBJECT_TAGS 11 tags; S3 takes at most 10/
    },
    {
      name: "KEY_PARTITIONS={minute} lists the placeholders",
      env: { KEY_PARTITIONS: "{yyyy}/{minute}" },
      args: [],
      expected: /KEY_PARTITIONS has an unknown placeholder \{minute\} \(\{yyyy\} \{mm\} \{dd\} \{hh\} \{version\}\)$/
    },
    { name: "KEY_PARTITIONS=/x", env: { KEY_PARTITIONS: "/x" }, args: [], expected: /KEY_PARTITIONS must not start with \// },
    {
      name: "KEY_PARTITIONS with a .. segment",
      env: { KEY_PARTITIONS: "{yyyy}/../x" },
      args: [],
      expected: /KEY_PARTITIONS has a "\.\." segment/
    },
    {
      name: "KEY_PARTITIONS with a space",
      env: { KEY_PARTITIONS: "v {version}" },
      args: [],
      expected: /KEY_PARTITIONS "v " holds a character other than/
    },
    { name: "MAX_PARTITIONS=0", env: { MAX_PARTITIONS: "0" }, args: [], expected: /MAX_PARTITIONS must be an integer ≥ 1, got "0"/ },
    {
      name: "LOG_LEVEL=loud lists the levels",
      env: { LOG_LEVEL: "loud" },
      args: [],
      expected: /LOG_LEVEL expected one of \(.*\bwarn, .*\), got "loud"$/
    }
  ])("$name", async ({ args, env, expected }) => {
    const line = await refusedStart({ DATA_DIR: tempDir("config"), ...env }, args)
    expect(line).toMatch(expected)
    expect(line).not.toContain(`"true"`)
  })
})

describe("what the service says about itself", () => {
  it("--version prints the package's version", async () => {
    const { version } = JSON.parse(readFileSync(join(import.meta.dirname, "../../package.json"), "utf8")) as {
      version: string
    }
    const child = spawn(process.execPath, [MAIN, "--version"], { env: { PATH: process.env.PATH ?? "" } })
    let out = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk))
    const code = await new Promise((done) => child.once("close", done))
    expect(code).toBe(0)
    expect(out).toBe(`s3-ingest ${version}\n`)
  })

  it("the listening line gives the version, storage, DATA_DIR and batch settings", async () => {
    service = await startService({ BATCH_MAX_ITEMS: "7", BATCH_MAX_BYTES: "9999", BATCH_MAX_WAIT_MS: "33" })
    const listening = service.logs.find((line) => line.message === "listening")
    expect(listening).toMatchObject({
      version: expect.stringMatching(/^\d+\.\d+\.\d+/),
      storage: "local",
      dataDir: service.dataDir,
      port: service.port,
      batchMaxItems: 7,
      batchMaxBytes: 9999,
      batchMaxWaitMs: 33
    })
  })

  it("LOG_LEVEL=warn is accepted and leaves the info lines out", async () => {
    const port = await freePort()
    const dataDir = tempDir("warn")
    const child = spawn(process.execPath, [MAIN, "service"], {
      env: { PATH: process.env.PATH ?? "", HOST: "127.0.0.1", PORT: String(port), DATA_DIR: dataDir, LOG_LEVEL: "warn" },
      stdio: ["ignore", "pipe", "pipe"]
    })
    children.push(child)
    let stdout = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
    const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)))
    const url = `http://127.0.0.1:${port}`
    await waitFor("/healthz", async () => (await status(url, "/healthz").catch(() => 0)) === 200 || undefined)
    child.kill("SIGTERM")
    expect(await exited).toBe(0)
    expect(stdout).toBe("")
  })
})

describe("DATA_DIR after a crash", () => {
  it("a lock whose process is a zombie (killed, not yet reaped) is taken over", async () => {
    // `sleep 0.1` exits under a parent that never reaps it: a zombie for as long as the parent lives.
    const parent = spawn("sh", ["-c", "sleep 0.1 & echo $!; exec sleep 60"], { stdio: ["ignore", "pipe", "ignore"] })
    children.push(parent)
    const zombie = await new Promise<number>((done) =>
      parent.stdout.setEncoding("utf8").once("data", (text: string) => done(Number(text.trim())))
    )
    const stat = () => readFileSync(`/proc/${zombie}/stat`, "utf8")
    const fields = () => stat().slice(stat().lastIndexOf(")") + 2).split(" ")
    await waitFor("the child to be a zombie", async () => fields()[0] === "Z" || undefined)
    const dataDir = tempDir("zombie")
    writeFileSync(join(dataDir, "s3-ingest.lock"), JSON.stringify({ pid: zombie, startTime: fields()[19] }) + "\n")
    service = await startService({ DATA_DIR: dataDir })
    expect(service.logs.find((line) => line.message === "taking over a stale lock")).toMatchObject({ pid: zombie })
    expect(JSON.parse(readFileSync(join(dataDir, "s3-ingest.lock"), "utf8"))).toMatchObject({ pid: service.child.pid })
  })
})

describe("the store breaker probes on its own", () => {
  let client: S3Client
  beforeAll(() => {
    client = makeTestS3Client(s3Endpoint)
  })
  afterAll(() => client.destroy())

  it("the start-up store check is logged: ok for a bucket that exists", async () => {
    service = await startService(s3Env(s3Bucket))
    const running = service
    await waitFor("the store check line", async () => running.logs.find((line) => line.message === "store check ok"))
  })

  it("a bucket created after the breaker opened: /readyz returns to 200 with no request sent", async () => {
    const bucket = `late-${runId}`
    service = await startService({ ...s3Env(bucket), BREAKER_COOLDOWN_MS: "200", BATCH_MAX_WAIT_MS: "0" })
    const running = service
    const warning = await waitFor("the start-up check's warning", async () =>
      running.logs.find((line) => line.message === "store check failed"))
    expect(warning).toMatchObject({ level: "warn", status: 404, bucket })
    expect(await status(running.url, "/readyz"), "a failed start-up check does not hold readiness").toBe(200)

    expect((await postJson(running.url, { version: "1", token: "t", data: [{ id: "late-1" }] })).status).toBe(202)
    await waitFor("/readyz 503 once NoSuchBucket opened the breaker", async () =>
      (await status(running.url, "/readyz")) === 503 || undefined)
    expect(running.logs.find((line) => line.message === "store breaker open")).toMatchObject({ code: "NoSuchBucket" })

    await client.send(new CreateBucketCommand({ Bucket: bucket }))
    // The cooldown doubles per failed probe and is capped at 30 s: ready again within that and a second.
    const ready = async () => (await status(running.url, "/readyz")) === 200 || undefined
    await waitFor("/readyz 200 without traffic", ready, 31_000)
    const probes = running.logs.filter((line) => line.message === "store breaker half-open").length
    expect(probes, "probes ran with no batch waiting").toBeGreaterThan(0)
    expect(await metric(running.url, "s3ingest_store_breaker_state")).toBe(0)
  })
})

describe("logs an operator can act on", () => {
  it("a retried attempt is logged as handled, never as an unhandled fiber error", async () => {
    service = await startService({
      LOG_LEVEL: "debug",
      STORE_FAULTS: "error=1:SlowDown",
      UPLOAD_RETRIES: "2",
      BREAKER_FAILURES: "100",
      BATCH_MAX_WAIT_MS: "0"
    })
    const running = service
    expect((await postJson(running.url, { version: "1", token: "t", data: [{ id: 1 }] })).status).toBe(202)
    await waitFor("the batch dead-lettered", async () => running.logs.find((line) => line.message === "batch dead-lettered"))
    const attempts = running.logs.filter((line) => line.message === "upload attempt failed")
    expect(attempts).toHaveLength(3)
    expect(attempts[0]).toMatchObject({ level: "debug", code: "SlowDown", retryable: true })
    expect(running.logs.filter((line) => /unhandled/i.test(line.message))).toEqual([])
  })

  it("a long drain reports its progress each second, and says when it waits on an open breaker", async () => {
    service = await startService({
      STORE_FAULTS: "error=1:AccessDenied",
      BREAKER_COOLDOWN_MS: "60000",
      BATCH_MAX_WAIT_MS: "0",
      SHUTDOWN_TIMEOUT_MS: "5000"
    })
    const running = service
    expect((await postJson(running.url, { version: "1", token: "t", data: [{ id: 1 }] })).status).toBe(202)
    await waitFor("the breaker open", async () => running.logs.find((line) => line.message === "store breaker open"))
    expect((await postJson(running.url, { version: "1", token: "t", data: [{ id: 2 }, { id: 3 }] })).status).toBe(202)
    await waitFor("the second batch held", async () =>
      (await metric(running.url, "s3ingest_payloads_in_flight")) === 2 || undefined)
    expect(await running.stop("SIGTERM")).toBe(1)
    const progress = running.logs.filter((line: LogLine) => line.message === "drain progress")
    // A 5 s budget keeps 2 s in reserve: about 3 s of drain, a line a second.
    expect(progress.length).toBeGreaterThanOrEqual(2)
    for (const line of progress) {
      expect(line).toMatchObject({ level: "info", breaker: "open", inFlight: 2, queued: 0, stored: 0, deadLettered: 1 })
    }
  })

  it("refused requests are logged at debug with status and reason, never the body, token or path", async () => {
    service = await startService({ LOG_LEVEL: "debug", INGEST_TOKENS: "good-token" })
    const running = service
    const secrets = ["secret-body-7f3a", "secret-token-91c2", "secret-path-5d0e"]
    const send = (path: string, headers: Record<string, string>, body: string) =>
      fetch(`${running.url}${path}`, { method: "POST", headers, body })
    expect((await send("/v1/payloads", { "content-type": "application/json" }, `{"version":"1","token":"${secrets[0]}",`))
      .status).toBe(400)
    expect((await send("/v1/payloads", { "content-type": "application/json", authorization: `Bearer ${secrets[1]}` }, "{}"))
      .status).toBe(401)
    expect((await send(`/${secrets[2]}`, { "content-type": "application/json" }, "{}")).status).toBe(404)
    expect((await send("/v1/payloads", { "content-type": "text/plain" }, secrets[0]!)).status).toBe(415)
    const refused = await waitFor("four refusals logged", async () => {
      const lines = running.logs.filter((line) => line.message === "request refused")
      return lines.length >= 4 ? lines : undefined
    })
    expect(refused.map((line) => [line.level, line.status, line.reason])).toEqual([
      ["debug", 400, "invalid_json"],
      ["debug", 401, "unauthorized"],
      ["debug", 404, "not_found"],
      ["debug", 415, "unsupported_media_type"]
    ])
    const everything = JSON.stringify(running.logs)
    for (const secret of secrets) expect(everything).not.toContain(secret)
  })
})

describe("a timed-out PUT may still land", () => {
  it("a store that applies the PUT and stalls: dead-lettered and in the bucket, same key and bytes", async () => {
    const proxy = await startFaultProxy(s3Endpoint, "pass")
    const client = makeTestS3Client(s3Endpoint)
    try {
      service = await startService({
        ...s3Env(s3Bucket, proxy.endpoint),
        S3_PREFIX: `${runId}/late`,
        UPLOAD_TIMEOUT_MS: "500",
        UPLOAD_RETRIES: "0",
        BREAKER_FAILURES: "100",
        BATCH_MAX_WAIT_MS: "0"
      })
      const running = service
      await waitFor("the start-up check", async () => running.logs.find((line) => line.message === "store check ok"))
      proxy.set("applied-then-hang")
      expect((await postJson(running.url, { version: "1", token: "t", data: [{ id: "late-1" }, { id: "late-2" }] })).status)
        .toBe(202)
      const dead = await waitFor("the batch dead-lettered", async () =>
        running.logs.find((line) => line.message === "batch dead-lettered"))
      expect(dead).toMatchObject({ code: "Timeout", payloads: 2 })
      const key = String(dead.key)
      const [file] = listFiles(join(running.dataDir, "dead-letter"))
      expect(key, "the dead-letter path is the key below its prefix").toBe(`${runId}/late/${file}`)
      expect(await listKeys(client, s3Bucket, `${runId}/late/`)).toEqual([key])
      const stored = await getObject(client, s3Bucket, key)
      expect(Buffer.from(stored.body)).toEqual(readFileSync(join(running.dataDir, "dead-letter", file!)))

      proxy.set("pass")
      expect(await running.stop("SIGTERM")).toBe(1)
      service = undefined
      // Replay writes the same key with the same bytes: still one copy of each id.
      const replay = runCli(["replay"], { DATA_DIR: running.dataDir, ...s3Env(s3Bucket), S3_PREFIX: `${runId}/late` })
      expect((await replay.exited).code).toBe(0)
      expect(await listKeys(client, s3Bucket, `${runId}/late/`)).toEqual([key])
      const lines = ndjsonText(key, (await getObject(client, s3Bucket, key)).body).split("\n")
      expect(lines.filter((line) => line !== "").map((line) => (JSON.parse(line) as { id: string }).id)).toEqual([
        "late-1",
        "late-2"
      ])
    } finally {
      client.destroy()
      await proxy.close()
    }
  })
})
