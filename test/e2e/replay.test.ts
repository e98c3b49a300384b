/**
 * Dead-letter replay and the DATA_DIR lock (DESIGN §6), against the built CLI.
 */
import { spawnSync } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { listFiles, MAIN, postJson, readLines, type RunningService, startService } from "../support/service.js"

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
  for (let i = 0; i < 200 && readLines(dir).length < ids.length; i++) await new Promise((r) => setTimeout(r, 25))
  expect(await service.stop("SIGTERM")).toBe(1)
  const dataDir = service.dataDir
  service = undefined
  return dataDir
}

describe("replay", () => {
  it("re-uploads every dead-letter file under its original key, deletes it, and is safe to run twice", async () => {
    const ids = Array.from({ length: 30 }, (_, i) => `r-${i}`)
    const dataDir = await deadLettered(ids)
    const files = readdirSync(join(dataDir, "dead-letter"))
    expect(files.length).toBeGreaterThan(0)

    const first = replay(dataDir)
    expect(first.status).toBe(0)
    expect(readdirSync(join(dataDir, "dead-letter"))).toEqual([])
    const stored = listFiles(join(dataDir, "objects"))
    expect(stored.map((f) => f.split("/").pop()).sort()).toEqual([...files].sort())
    for (const f of stored) expect(f).toMatch(/^payloads\/\d{4}\/\d{2}\/\d{2}\/\d{2}\//)
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

  it("a fresh DATA_DIR gets its lock", () => {
    const dataDir = mkdtempSync(join(tmpdir(), "s3-ingest-lock-"))
    expect(replay(dataDir).status).toBe(0)
  })
})
