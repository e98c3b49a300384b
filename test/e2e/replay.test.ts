/**
 * Dead-letter replay and the DATA_DIR lock, against the built CLI: a working store, stores that
 * keep failing (replay must end and say what it left), signals, and files that are not batches.
 */
import { spawnSync } from "node:child_process"
import { randomUUID } from "node:crypto"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { gzipSync } from "node:zlib"
import type { S3Client } from "@aws-sdk/client-s3"
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest"
import { type CliRun, runCli } from "../support/cli.js"
import { startFaultProxy } from "../support/faultProxy.js"
import { getObject, listKeys, makeTestS3Client, startHangingServer } from "../support/s3.js"
import { listFiles, MAIN, postJson, readLines, type RunningService, s3rverEnv, startService } from "../support/service.js"
import { waitFor } from "../support/wait.js"



const replay = (dataDir: string, env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [MAIN, "replay"], {
    env: { PATH: process.env.PATH ?? "", DATA_DIR: dataDir, ...env },
    encoding: "utf8",
    timeout: 30_000
  })

let service: RunningService | undefined
afterEach(async () => {
  await service?.stop("SIGKILL")
  service = undefined
})

/** A DATA_DIR whose dead-letter holds what a service refused to store (a permanent store error). */
const deadLettered = async (ids: ReadonlyArray<string>) => {
  service = await startService({ STORE_FAULTS: "error=1:AccessDenied", BATCH_MAX_WAIT_MS: "0" })
  const res = await postJson(service.url, { version: "1", token: "t", data: ids.map((id) => ({ id })) })
  expect(res.status).toBe(202)
  const dir = join(service.dataDir, "dead-letter")
  await waitFor("the batch dead-lettered", () => readLines(dir).length === ids.length || undefined, 5_000)
  expect(await service.stop("SIGTERM")).toBe(1)
  const dataDir = service.dataDir
  service = undefined
  return dataDir
}

describe("replay", () => {
  it("re-uploads every dead-letter file under its original key, deletes it, and is safe to run twice", async () => {
    const ids = Array.from({ length: 30 }, (_, i) => `r-${i}`)
    const dataDir = await deadLettered(ids)
    // Each file sits at its key below the prefix.
    const files = listFiles(join(dataDir, "dead-letter"))
    expect(files.length).toBeGreaterThan(0)
    for (const f of files) expect(f).toMatch(/^\d{4}\/\d{2}\/\d{2}\/\d{2}\/[^/]+\.ndjson\.gz$/)

    const first = replay(dataDir)
    expect(first.status).toBe(0)
    expect(readdirSync(join(dataDir, "dead-letter")), "no file, and no directory it left empty").toEqual([])
    expect(listFiles(join(dataDir, "objects"))).toEqual(files.map((f) => `payloads/${f}`).sort())
    expect(readLines(join(dataDir, "objects")).map((l) => l.id).sort()).toEqual([...ids].sort())
    const summary = first.stdout.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.message === "replay finished")
    expect(summary).toMatchObject({ files: files.length, stored: files.length, failed: 0, left: 0, payloads: ids.length })

    const second = replay(dataDir)
    expect(second.status).toBe(0)
    expect(readLines(join(dataDir, "objects")).length).toBe(ids.length)
  })

  it("exits non-zero and keeps the files when the store fails", async () => {
    const dataDir = await deadLettered(["keep-1", "keep-2"])
    const before = readdirSync(join(dataDir, "dead-letter"))
    const run = replay(dataDir, { STORE_FAULTS: "error=1:AccessDenied" })
    expect(run.status).toBe(1)
    expect(readdirSync(join(dataDir, "dead-letter"))).toEqual(before)
  })
})

describe("DATA_DIR lock", () => {
  it("replay refuses while a service holds the lock; a stale lock is taken over", async () => {
    service = await startService()
    const lock = JSON.parse(readFileSync(join(service.dataDir, "s3-ingest.lock"), "utf8")) as { pid: number }
    expect(lock.pid).toBe(service.child.pid)
    const refused = replay(service.dataDir)
    expect(refused.status).not.toBe(0)
    expect(refused.stderr).toBe(
      `s3-ingest: DATA_DIR ${service.dataDir} is in use: process ${service.child.pid} holds ${
        join(service.dataDir, "s3-ingest.lock")
      }\n`
    )

    const second = spawnSync(process.execPath, [MAIN, "service"], {
      env: { PATH: process.env.PATH ?? "", DATA_DIR: service.dataDir, PORT: "0", HOST: "127.0.0.1" },
      encoding: "utf8",
      timeout: 15_000
    })
    expect(second.status).toBe(1)

    const dataDir = service.dataDir
    expect(await service.stop("SIGTERM")).toBe(0)
    service = undefined
    expect(listFiles(dataDir)).not.toContain("s3-ingest.lock")

    // A lock left by a process that is gone (or whose PID now names another process).
    writeFileSync(join(dataDir, "s3-ingest.lock"), JSON.stringify({ pid: process.pid, startTime: "1" }) + "\n")
    expect(replay(dataDir).status).toBe(0)
  })

  it("replay holds DATA_DIR's lock while it runs and removes it when it ends", async () => {
    const hanging = await startHangingServer()
    try {
      const dataDir = mkdtempSync(join(tmpdir(), "s3-ingest-lock-"))
      writeDeadLetters(dataDir, [["lock-1"]])
      const run = replayAsync(dataDir, { ...s3Env(hanging.endpoint, `${runId}/lock`), UPLOAD_TIMEOUT_MS: "60000" })
      await run.logged("replay started")
      const lock = JSON.parse(readFileSync(join(dataDir, "s3-ingest.lock"), "utf8")) as { pid: number }
      expect(lock.pid).toBe(run.child.pid)
      run.child.kill("SIGTERM")
      expect((await run.exited).code).toBe(1)
      expect(existsSync(join(dataDir, "s3-ingest.lock"))).toBe(false)
    } finally {
      await hanging.close()
    }
  })
})

// --- replay against a store that keeps failing ---------------------------------------------------

const s3Endpoint = inject("s3Endpoint")
const s3Bucket = inject("s3Bucket")
const runId = randomUUID().slice(0, 8)

/** Writes dead-letter files as the service would: one batch each, named after its key. */
const writeDeadLetters = (dataDir: string, batches: ReadonlyArray<ReadonlyArray<string>>): Array<string> => {
  const dir = join(dataDir, "dead-letter")
  mkdirSync(dir, { recursive: true })
  return batches.map((ids, i) => {
    const name = `20261203T101010${String(i).padStart(3, "0")}Z-0badcafe-${String(i + 1).padStart(8, "0")}.ndjson`
    writeFileSync(join(dir, name), ids.map((id) => JSON.stringify({ id }) + "\n").join(""))
    return name
  })
}

const s3Env = (endpoint: string, prefix: string): Record<string, string> => s3rverEnv(endpoint, s3Bucket, prefix)

const replayAsync = (dataDir: string, env: Record<string, string>) => runCli(["replay"], { DATA_DIR: dataDir, ...env })

/** Every id stored under `prefix` in the test bucket, with repeats. */
const storedIds = async (client: S3Client, prefix: string): Promise<Array<string>> => {
  const ids: Array<string> = []
  for (const key of await listKeys(client, s3Bucket, `${prefix}/`)) {
    const { body } = await getObject(client, s3Bucket, key)
    for (const line of Buffer.from(body).toString("utf8").split("\n")) {
      if (line !== "") ids.push((JSON.parse(line) as { id: string }).id)
    }
  }
  return ids.sort()
}

const summaryOf = (run: CliRun) => run.logs.find((line) => line.message === "replay finished")

describe("replay against a failing store: it ends, says what happened, and a later run stores each file once", () => {
  const batches = [["f-1", "f-2"], ["f-3"], ["f-4", "f-5", "f-6"]]
  const allIds = batches.flat().sort()
  let client: S3Client
  const closers: Array<() => Promise<void>> = []

  beforeAll(() => {
    client = makeTestS3Client(s3Endpoint)
  })
  afterAll(() => client.destroy())
  afterEach(async () => {
    for (const close of closers.splice(0)) await close()
  })

  /** After a failed run: every file still in place; a run against the working store stores each once. */
  const expectRecovers = async (dataDir: string, names: ReadonlyArray<string>, prefix: string) => {
    expect(readdirSync(join(dataDir, "dead-letter")).sort()).toEqual([...names].sort())
    const again = replayAsync(dataDir, s3Env(s3Endpoint, prefix))
    expect((await again.exited).code).toBe(0)
    expect(summaryOf(again)).toMatchObject({ files: names.length, stored: names.length, failed: 0, left: 0 })
    expect(readdirSync(join(dataDir, "dead-letter"))).toEqual([])
    expect(await storedIds(client, prefix)).toEqual(allIds)
  }

  it("a store that never answers: the first file's retries run out, the rest are left, exit 1", async () => {
    const hanging = await startHangingServer()
    closers.push(hanging.close)
    const dataDir = mkdtempSync(join(tmpdir(), "s3-ingest-replay-"))
    const names = writeDeadLetters(dataDir, batches)
    const prefix = `${runId}/hang`
    const run = replayAsync(dataDir, { ...s3Env(hanging.endpoint, prefix), UPLOAD_TIMEOUT_MS: "500" })
    expect((await run.exited).code, run.stderr()).toBe(1)
    expect(summaryOf(run)).toMatchObject({ files: 3, stored: 0, failed: 1, left: 2, interrupted: false })
    const failed = run.logs.find((line) => line.message === "replay failed; file kept")
    expect(failed).toMatchObject({ file: names[0], code: "Timeout", retryable: true })
    expect(failed?.reason).toMatch(/timed out after 500 ms/)
    expect(run.logs.filter((line) => line.message === "file left").map((line) => line.file)).toEqual(names.slice(1))
    await expectRecovers(dataDir, names, prefix)
  })

  it("a store that applies each PUT, then answers 500: exit 1 once the breaker opens", async () => {
    const proxy = await startFaultProxy(s3Endpoint, "applied-then-500")
    closers.push(proxy.close)
    const dataDir = mkdtempSync(join(tmpdir(), "s3-ingest-replay-"))
    const names = writeDeadLetters(dataDir, batches)
    const prefix = `${runId}/applied`
    const run = replayAsync(dataDir, s3Env(proxy.endpoint, prefix))
    expect((await run.exited).code, run.stderr()).toBe(1)
    expect(summaryOf(run)).toMatchObject({ stored: 0, failed: 1, left: 2 })
    expect(proxy.counts().puts, "BREAKER_FAILURES attempts, then it stops").toBe(5)
    expect(run.logs.find((line) => line.message === "replay failed; file kept")).toMatchObject({
      code: "InternalError",
      status: 500,
      retryable: true
    })
    // The first file's object landed five times over, identically: one copy of its ids.
    expect(await storedIds(client, prefix)).toEqual([...batches[0]!].sort())
    await expectRecovers(dataDir, names, prefix)
  })

  it("a permanent 403: one attempt, the error's code and status logged, exit 1", async () => {
    const proxy = await startFaultProxy(s3Endpoint, "forbidden")
    closers.push(proxy.close)
    const dataDir = mkdtempSync(join(tmpdir(), "s3-ingest-replay-"))
    const names = writeDeadLetters(dataDir, batches)
    const prefix = `${runId}/forbidden`
    const run = replayAsync(dataDir, s3Env(proxy.endpoint, prefix))
    expect((await run.exited).code, run.stderr()).toBe(1)
    expect(proxy.counts().puts).toBe(1)
    const failed = run.logs.find((line) => line.message === "replay failed; file kept")
    expect(failed).toMatchObject({ code: "AccessDenied", status: 403, retryable: false })
    expect(String(failed?.reason)).toMatch(/AccessDenied/)
    expect(summaryOf(run)).toMatchObject({ stored: 0, failed: 1, left: 2 })
    await expectRecovers(dataDir, names, prefix)
  })

  it("SIGTERM during an upload: exit 1 with the summary, every file left in place", async () => {
    const hanging = await startHangingServer()
    closers.push(hanging.close)
    const dataDir = mkdtempSync(join(tmpdir(), "s3-ingest-replay-"))
    const names = writeDeadLetters(dataDir, batches)
    const prefix = `${runId}/sigterm`
    const run = replayAsync(dataDir, { ...s3Env(hanging.endpoint, prefix), UPLOAD_TIMEOUT_MS: "60000" })
    await run.logged("replay started")
    // The start-up store check and the first PUT both reach the hanging store.
    await waitFor("the first PUT to reach the store", () =>
      hanging.connections.some((connection) => connection.received().startsWith("PUT")) || undefined)
    run.child.kill("SIGTERM")
    expect((await run.exited).code).toBe(1)
    expect(summaryOf(run)).toMatchObject({ files: 3, stored: 0, failed: 0, left: 3, interrupted: true })
    await expectRecovers(dataDir, names, prefix)
  })
})

describe("replay's input", () => {
  it("skips empty and non-NDJSON files with a warning, counts them, and counts progress over the rest", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "s3-ingest-replay-"))
    const [, empty, junk] = writeDeadLetters(dataDir, [["s-1"], [], ["s-2"], ["s-3", "s-4"]])
    writeFileSync(join(dataDir, "dead-letter", junk!), "not json\n")
    const run = replayAsync(dataDir, {})
    expect((await run.exited).code).toBe(0)
    const skipped = run.logs.filter((line) => line.message === "skipped, left alone")
    expect(skipped.map((line) => [line.file, line.problem])).toEqual([[empty, "empty file"], [junk, "line 1 is not JSON"]])
    expect(skipped.every((line) => line.level === "warn")).toBe(true)
    expect(run.logs.filter((line) => line.message === "replayed").map((line) => line.progress)).toEqual(["1/2", "2/2"])
    expect(summaryOf(run)).toMatchObject({ files: 2, stored: 2, skipped: 2, failed: 0, left: 0, payloads: 3 })
    expect(readdirSync(join(dataDir, "dead-letter")).sort()).toEqual([empty, junk].sort())
    expect(readLines(join(dataDir, "objects")).map((line) => line.id).sort()).toEqual(["s-1", "s-3", "s-4"])
  })

  it("replays gzipped files unchanged under the key their path mirrors, and skips a .gz that is not gzip", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "s3-ingest-replay-"))
    const below = "version=1.4/dt=2026-12-03/20261203T101010000Z-0badcafe-00000001.ndjson.gz"
    const bytes = gzipSync(`{"id":"g-1"}\n{"id":"g-2"}\n`)
    mkdirSync(join(dataDir, "dead-letter", "version=1.4", "dt=2026-12-03"), { recursive: true })
    writeFileSync(join(dataDir, "dead-letter", below), bytes)
    writeFileSync(join(dataDir, "dead-letter", "20261203T101010000Z-0badcafe-00000002.ndjson.gz"), "plain text\n")
    const run = replayAsync(dataDir, {})
    expect((await run.exited).code).toBe(0)
    expect(summaryOf(run)).toMatchObject({ files: 1, stored: 1, skipped: 1, payloads: 2 })
    expect(run.logs.find((line) => line.message === "skipped, left alone")).toMatchObject({ problem: "not gzip" })
    expect(readFileSync(join(dataDir, "objects", "payloads", below))).toEqual(bytes)
    expect(existsSync(join(dataDir, "dead-letter", "version=1.4")), "its emptied directories are gone").toBe(false)
  })

  it("refuses a DATA_DIR that does not exist: exit 1, one stderr line, nothing created", async () => {
    const parent = mkdtempSync(join(tmpdir(), "s3-ingest-replay-"))
    const dataDir = join(parent, "mistyped")
    const run = replayAsync(dataDir, {})
    expect((await run.exited).code).toBe(1)
    expect(run.stderr()).toBe(`s3-ingest: DATA_DIR ${dataDir} cannot be used: it does not exist\n`)
    expect(run.logs).toEqual([])
    expect(existsSync(dataDir)).toBe(false)
  })

  it("DATA_DIR=/proc/x stops within seconds (exit 1, one stderr line naming it)", async () => {
    const run = replayAsync("/proc/x", {})
    expect((await run.exited).code).toBe(1)
    expect(run.stderr()).toMatch(/^s3-ingest: DATA_DIR \/proc\/x cannot be used: .+\n$/)
  })
})
