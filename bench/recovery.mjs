#!/usr/bin/env node
// `npm run bench:recovery`: how long the built service (`node dist/main.js service`, local store,
// free loopback port) takes after a crash to be ready again, and to store everything, with N
// payloads in its write-ahead journal.
//
//   1. Cold start, for comparison: spawn on an empty DATA_DIR → first /readyz 200 (median of 3).
//   2. Load: a fresh DATA_DIR and STORE_FAULTS=hang=1, so every upload hangs, nothing is stored
//      and everything stays journaled (UPLOAD_TIMEOUT_MS of an hour: no attempt is cut, so no
//      retry, no breaker and no dead letter; MAX_QUEUE and MAX_QUEUE_BYTES hold all N). N varied
//      telemetry records (bench/bodies.mjs) are posted in collections of 100, 4 keep-alive
//      requests at a time; every answer must be 202. Then SIGKILL, and the journal's size on disk.
//   3. Restart on the same DATA_DIR without STORE_FAULTS: ms from the spawn to the first /readyz
//      200 (polled every 10 ms), the `journal recovered` log line (payloads, batches, segments,
//      ms), and ms from the spawn until s3ingest_payloads_stored_total reaches N (polled every
//      25 ms). Then SIGTERM, which must exit 0, and the DATA_DIR is removed.
//
// Prints a table and appends a JSON line to bench-results/recovery.jsonl. The service's own
// settings pass through the environment, except STORE_FAULTS, and DURABILITY (always journal).
//
//   npm run bench:recovery                           100,000 payloads
//   BENCH_RECOVERY_PAYLOADS=20000 npm run bench:recovery
//   BENCH_DATA_DIR=/mnt/ssd npm run bench:recovery   where the scratch DATA_DIRs go (default: the OS temp dir)
import { spawn } from "node:child_process"
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs"
import { cpus, tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { telemetry } from "./bodies.mjs"
import { scrape, value } from "./metrics.mjs"
import { freePort, sleep } from "./net.mjs"

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const payloads = Number(process.env.BENCH_RECOVERY_PAYLOADS ?? 100_000)
const scratch = process.env.BENCH_DATA_DIR ?? tmpdir()
const PER_REQUEST = 100
const CLIENTS = 4
const COLD_STARTS = 3
const DEADLINE_MS = 300_000

const since = (t0) => Math.round(performance.now() - t0)
const median = (list) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]

const bodies = Array.from({ length: Math.ceil(payloads / PER_REQUEST) }, (_, r) =>
  JSON.stringify({
    version: "1.0",
    token: "bench",
    data: Array.from({ length: Math.min(PER_REQUEST, payloads - r * PER_REQUEST) }, (_, i) => telemetry(r * PER_REQUEST + i))
  }))
const bodyBytes = bodies.reduce((sum, body) => sum + Buffer.byteLength(body), 0)
// The queue must admit all N while nothing leaves it. The default byte bound (64 MiB, which also
// sizes the journal's segments) is kept when it holds them with a margin.
const queueEnv = {
  MAX_QUEUE: process.env.MAX_QUEUE ?? String(Math.max(200_000, 2 * payloads)),
  MAX_QUEUE_BYTES: process.env.MAX_QUEUE_BYTES ?? String(Math.max(64 * 1048576, Math.ceil(1.25 * bodyBytes)))
}

/** Services and DATA_DIRs to clean up should the bench fail half-way. */
const running = new Set()
const dataDirs = new Set()

const freshDataDir = () => {
  const dir = mkdtempSync(join(scratch, "s3-ingest-recovery-"))
  dataDirs.add(dir)
  return dir
}

const removeDataDir = (dir) => {
  rmSync(dir, { recursive: true, force: true })
  dataDirs.delete(dir)
}

/** Spawns the service on a free port; its JSON log lines (stdout) are collected in `logs`. */
const start = async (dataDir, env) => {
  const port = await freePort()
  const { STORE_FAULTS: _, ...inherited } = process.env
  const spawnedAt = performance.now()
  const child = spawn(process.execPath, [join(root, "dist/main.js"), "service"], {
    env: { ...inherited, HOST: "127.0.0.1", PORT: String(port), DATA_DIR: dataDir, DURABILITY: "journal", ...env },
    stdio: ["ignore", "pipe", "inherit"]
  })
  const service = { child, url: `http://127.0.0.1:${port}`, spawnedAt, logs: [], exit: undefined }
  createInterface({ input: child.stdout }).on("line", (line) => {
    if (line.startsWith("{")) service.logs.push(JSON.parse(line))
  })
  running.add(service)
  service.exited = new Promise((done) =>
    child.once("exit", (code, signal) => {
      running.delete(service)
      service.exit = code ?? signal
      done(service.exit)
    }))
  return service
}

const stop = (service, signal) => {
  service.child.kill(signal)
  return service.exited
}

/** Waits for `check` (polled every `everyMs`) to hold; ms since the spawn. */
const until = async (service, what, everyMs, check) => {
  while (service.exit === undefined && since(service.spawnedAt) < DEADLINE_MS) {
    if (await check().catch(() => false)) return since(service.spawnedAt)
    await sleep(everyMs)
  }
  throw new Error(`${what}: not reached (service exit ${service.exit ?? "none"}, ${since(service.spawnedAt)} ms)`)
}

const ready = (service) => until(service, "/readyz 200", 10, async () => (await fetch(`${service.url}/readyz`)).ok)

/** Spawn → first /readyz 200 on an empty DATA_DIR; SIGTERM must then exit 0. */
const coldStart = async () => {
  const dataDir = freshDataDir()
  const service = await start(dataDir, {})
  const ms = await ready(service)
  const exit = await stop(service, "SIGTERM")
  if (exit !== 0) throw new Error(`cold start: SIGTERM exited with ${exit}`)
  removeDataDir(dataDir)
  return ms
}

/** Posts every body, CLIENTS at a time over keep-alive connections (fetch's pool); answers by status. */
const post = async (url) => {
  const answers = {}
  let next = 0
  const client = async () => {
    while (next < bodies.length) {
      const response = await fetch(`${url}/v1/payloads`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: bodies[next++]
      })
      await response.arrayBuffer()
      answers[response.status] = (answers[response.status] ?? 0) + 1
    }
  }
  await Promise.all(Array.from({ length: CLIENTS }, client))
  return answers
}

/** Bytes and files under `dir`. */
const sizeOnDisk = (dir) => {
  const files = readdirSync(dir, { recursive: true }).map((name) => statSync(join(dir, name))).filter((s) => s.isFile())
  return { bytes: files.reduce((sum, s) => sum + s.size, 0), files: files.length }
}

const run = async () => {
  const cold = []
  for (let i = 0; i < COLD_STARTS; i++) cold.push(await coldStart())
  process.stderr.write(`cold start: ${cold.join(", ")} ms to /readyz 200\n`)

  const dataDir = freshDataDir()
  const loaded = await start(dataDir, { ...queueEnv, STORE_FAULTS: "hang=1", UPLOAD_TIMEOUT_MS: "3600000" })
  await ready(loaded)
  process.stderr.write(`posting ${payloads} payloads, ${PER_REQUEST} per request, ${CLIENTS} clients\n`)
  const loadStart = performance.now()
  const answers = await post(loaded.url)
  const loadMs = since(loadStart)
  if (Object.keys(answers).some((status) => status !== "202")) {
    throw new Error(`answers other than 202: ${JSON.stringify(answers)}`)
  }
  const atKill = await scrape(loaded.url)
  const counts = ["accepted", "stored", "dead_lettered"].map((c) => value(atKill, `s3ingest_payloads_${c}_total`))
  if (counts[0] !== payloads || counts[1] !== 0 || counts[2] !== 0) {
    throw new Error(`before the kill: accepted, stored, dead-lettered = ${counts.join(", ")}; want ${payloads}, 0, 0`)
  }
  await stop(loaded, "SIGKILL")
  const journal = sizeOnDisk(join(dataDir, "journal"))
  process.stderr.write(`killed; journal ${journal.bytes} bytes in ${journal.files} files; restarting\n`)

  const restarted = await start(dataDir, { ...queueEnv, LOG_LEVEL: "info" })
  const readyMs = await ready(restarted)
  const storedMs = await until(restarted, `${payloads} payloads stored`, 25, async () =>
    value(await scrape(restarted.url), "s3ingest_payloads_stored_total") >= payloads)
  const recovered = restarted.logs.find((line) => line.message === "journal recovered") ?? {}
  const exit = await stop(restarted, "SIGTERM")
  if (exit !== 0) throw new Error(`restart: SIGTERM exited with ${exit}`)
  removeDataDir(dataDir)

  return {
    at: new Date().toISOString(),
    payloads,
    payloadsPerRequest: PER_REQUEST,
    clients: CLIENTS,
    loadMs,
    journalBytes: journal.bytes,
    journalMb: Number((journal.bytes / 1048576).toFixed(1)),
    journalFiles: journal.files,
    coldReadyMs: median(cold),
    coldReadyMsRuns: cold,
    readyMs,
    recoveredPayloads: recovered.payloads ?? null,
    recoveredBatches: recovered.batches ?? null,
    recoveredSegments: recovered.segments ?? null,
    recoveryLogMs: recovered.ms ?? null,
    storedMs,
    exitCode: exit,
    maxQueue: Number(queueEnv.MAX_QUEUE),
    maxQueueBytes: Number(queueEnv.MAX_QUEUE_BYTES),
    compression: process.env.OBJECT_COMPRESSION ?? "gzip",
    machine: `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, node ${process.version}`
  }
}

let row
try {
  row = await run()
} finally {
  for (const service of running) await stop(service, "SIGKILL")
  for (const dir of dataDirs) removeDataDir(dir)
}

mkdirSync(join(root, "bench-results"), { recursive: true })
appendFileSync(join(root, "bench-results", "recovery.jsonl"), JSON.stringify(row) + "\n")

const columns = [
  ["payloads", "payloads"],
  ["load ms", "loadMs"],
  ["journal MB", "journalMb"],
  ["journal files", "journalFiles"],
  ["cold ready ms", "coldReadyMs"],
  ["ready ms", "readyMs"],
  ["recovered", "recoveredPayloads"],
  ["batches", "recoveredBatches"],
  ["segments", "recoveredSegments"],
  ["recovery log ms", "recoveryLogMs"],
  ["all stored ms", "storedMs"],
  ["exit", "exitCode"]
]
process.stdout.write("\n" + columns.map(([h]) => h).join(" | ") + "\n")
process.stdout.write(columns.map(([, k]) => String(row[k])).join(" | ") + "\n")
