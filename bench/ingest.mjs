#!/usr/bin/env node
// `npm run bench`: drives the built service (`node dist/main.js service`, local store on a temp
// dir, free loopback port) with autocannon, for 1- and 10-payload collections of varied
// telemetry records (bench/bodies.mjs), and prints requests/s, payloads/s, latency, peak
// RSS, server CPU, payloads per object, PUTs per 1,000 payloads, NDJSON and stored bytes per
// payload, CPU per stored payload, and the write-ahead journal's cost: group-commit fsyncs, their
// p50 and p99 (estimated from s3ingest_journal_fsync_seconds' buckets: bench/metrics.mjs) and the
// peak of s3ingest_journal_bytes, sampled every 250 ms (0 and "-" with DURABILITY=memory). Each
// result is also appended as a JSON line to bench-results/ingest.jsonl. The service's own settings
// pass through the environment.
//
//   npm run bench                      10 s per scenario, 50 connections
//   BENCH_SECONDS=30 BENCH_CONNECTIONS=100 npm run bench
//   BENCH_VERSIONS=5 KEY_PARTITIONS='version={version}/dt={yyyy}-{mm}-{dd}/hour={hh}' npm run bench
//                                      requests cycle through 5 collection versions
//   OBJECT_COMPRESSION=none npm run bench
//   DURABILITY=memory npm run bench    202 once queued: no journal on the request path
//   BENCH_ACK=stored npm run bench     every request waits for its receipt (?ack=stored): the
//                                      latencies are then receipt latencies, "200s" counts receipts
//   BENCH_BODY=kit npm run bench       the comparison kit's repeated payload instead of varied telemetry
//   BENCH_DATA_DIR=/tmp/s3rver-tmpfs   where the scratch DATA_DIR goes (default: the OS temp dir)
import { spawn } from "node:child_process"
import { appendFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { cpus, tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import autocannon from "autocannon"
import { payload, telemetry } from "./bodies.mjs"
import { histogram, quantile, scrape as scrapeMetrics, value } from "./metrics.mjs"
import { freePort, sleep } from "./net.mjs"

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const seconds = Number(process.env.BENCH_SECONDS ?? 10)
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50)
const sizes = (process.env.BENCH_PAYLOADS ?? "1,10").split(",").map(Number)
const versions = Number(process.env.BENCH_VERSIONS ?? 1)
const scratch = process.env.BENCH_DATA_DIR ?? tmpdir()


/** The figures the table needs from one scrape of /metrics, and the samples (for the fsync histogram). */
const scrape = async (url) => {
  const samples = await scrapeMetrics(url)
  const read = (series) => value(samples, series)
  return {
    samples,
    accepted: read("s3ingest_payloads_accepted_total"),
    stored: read("s3ingest_payloads_stored_total"),
    objects: read("s3ingest_objects_stored_total"),
    rawBytes: read(`s3ingest_object_bytes_total{stage="raw"}`),
    storedBytes: read(`s3ingest_object_bytes_total{stage="stored"}`),
    cpu: read("process_cpu_seconds_total"),
    rss: read("process_resident_memory_bytes"),
    journalBytes: read("s3ingest_journal_bytes")
  }
}

/** A quantile of the fsyncs in ms: "-" when there was none, ">1000" past the last bucket (1 s). */
const fsyncMs = (fsync, q) => {
  const seconds = quantile(fsync, q)
  return seconds === null ? "-" : seconds === Infinity ? ">1000" : Math.round(seconds * 1e6) / 1e3
}

const shape = process.env.BENCH_BODY ?? "telemetry"
const ack = process.env.BENCH_ACK
// Distinct records per version: more than a batch holds, so no object repeats a record.
const DISTINCT_RECORDS = 4096

/**
 * The request bodies, versions interleaved. `telemetry`: 4,096 distinct records per version, so
 * gzip sees varied records as it would in production; `kit`: the comparison kit's repeated 1 KiB
 * payload, which compresses far better than real data.
 */
const bodiesOf = (n) =>
  Array.from({ length: shape === "kit" ? versions : Math.ceil(DISTINCT_RECORDS / n) * versions }, (_, r) =>
    JSON.stringify({
      version: `1.${r % versions}`,
      token: "bench",
      data: Array.from({ length: n }, (_, i) => (shape === "kit" ? payload(i) : telemetry(r * n + i)))
    }))

/** One request whose body goes round the list across all connections, so they never send in step. */
const requests = (n) => {
  const bodies = bodiesOf(n)
  let next = 0
  return [{ setupRequest: (request) => ({ ...request, body: bodies[next++ % bodies.length] }) }]
}

const runScenario = async (payloads) => {
  const port = await freePort()
  const dataDir = mkdtempSync(join(scratch, "s3-ingest-bench-"))
  const child = spawn(process.execPath, [join(root, "dist/main.js"), "service"], {
    env: { ...process.env, HOST: "127.0.0.1", PORT: String(port), DATA_DIR: dataDir, LOG_LEVEL: "warning" },
    stdio: ["ignore", "ignore", "inherit"]
  })
  const url = `http://127.0.0.1:${port}`
  // /readyz, not /healthz: while the journal opens the listener answers /healthz 200 and POSTs 503.
  for (let i = 0; i < 400 && !(await fetch(`${url}/readyz`).then((r) => r.ok, () => false)); i++) await sleep(25)
  let peakRss = 0
  let peakJournal = 0
  const sampler = setInterval(() => {
    scrape(url).then((m) => {
      peakRss = Math.max(peakRss, m.rss)
      peakJournal = Math.max(peakJournal, m.journalBytes)
    }, () => {})
  }, 250)
  const before = await scrape(url)
  process.stderr.write(
    `\n${payloads} payload(s) per request, ${versions} version(s), ${connections} connections, ${seconds} s\n`
  )
  const result = await new Promise((done, fail) => {
    const instance = autocannon({
      url: `${url}/v1/payloads${ack === undefined ? "" : `?ack=${ack}`}`,
      method: "POST",
      headers: { "content-type": "application/json" },
      requests: requests(payloads),
      connections,
      duration: seconds
    }, (error, r) => (error ? fail(error) : done(r)))
    autocannon.track(instance, { renderResultsTable: false, renderLatencyTable: false })
  })
  // Let the queue drain, so stored payloads and CPU cover the whole load.
  let after = await scrape(url)
  for (let i = 0; i < 100 && after.stored < after.accepted; i++) {
    await sleep(100)
    after = await scrape(url)
  }
  clearInterval(sampler)
  child.kill("SIGTERM")
  await new Promise((r) => child.once("exit", r))
  rmSync(dataDir, { recursive: true, force: true })

  const accepted = after.accepted - before.accepted
  const stored = after.stored - before.stored
  const objects = after.objects - before.objects
  const cpu = after.cpu - before.cpu
  const perPayload = (n) => (stored === 0 ? null : Math.round(n / stored))
  const fsync = histogram(after.samples, "s3ingest_journal_fsync_seconds", before.samples)
  const row = {
    at: new Date().toISOString(),
    payloadsPerRequest: payloads,
    connections,
    seconds,
    requestsPerSecond: Math.round(result.requests.average),
    non2xx: result.non2xx,
    ack: ack ?? "accepted",
    receipts: result.statusCodeStats?.["200"]?.count ?? 0,
    errors: result.errors,
    payloadsPerSecond: Math.round(accepted / seconds),
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
    peakRssMb: Math.round(Math.max(peakRss, after.rss) / 1048576),
    serverCpuSeconds: Number(cpu.toFixed(2)),
    accepted,
    stored,
    body: shape,
    versions,
    compression: process.env.OBJECT_COMPRESSION ?? "gzip",
    keyPartitions: process.env.KEY_PARTITIONS ?? "{yyyy}/{mm}/{dd}/{hh}",
    payloadsPerObject: objects === 0 ? 0 : Math.round(stored / objects),
    putsPer1000Payloads: stored === 0 ? null : Number(((objects * 1000) / stored).toFixed(2)),
    ndjsonBytesPerPayload: perPayload(after.rawBytes - before.rawBytes),
    storedBytesPerPayload: perPayload(after.storedBytes - before.storedBytes),
    cpuMsPerStoredPayload: stored === 0 ? null : Number(((cpu * 1000) / stored).toFixed(4)),
    durability: process.env.DURABILITY ?? "journal",
    fsyncs: fsync.count,
    fsyncP50Ms: fsyncMs(fsync, 0.5),
    fsyncP99Ms: fsyncMs(fsync, 0.99),
    journalPeakMb: Number((Math.max(peakJournal, after.journalBytes) / 1048576).toFixed(1)),
    machine: `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, node ${process.version}`
  }
  return row
}

const rows = []
for (const payloads of sizes) rows.push(await runScenario(payloads))

mkdirSync(join(root, "bench-results"), { recursive: true })
for (const row of rows) appendFileSync(join(root, "bench-results", "ingest.jsonl"), JSON.stringify(row) + "\n")

const columns = [
  ["payloads/req", "payloadsPerRequest"],
  ["req/s", "requestsPerSecond"],
  ["payloads/s", "payloadsPerSecond"],
  ["p50 ms", "latencyP50Ms"],
  ["p99 ms", "latencyP99Ms"],
  ["non-2xx", "non2xx"],
  ["200s", "receipts"],
  ["peak RSS MB", "peakRssMb"],
  ["server CPU s", "serverCpuSeconds"],
  ["stored", "stored"],
  ["payloads/object", "payloadsPerObject"],
  ["PUTs/1000 payloads", "putsPer1000Payloads"],
  ["NDJSON B/payload", "ndjsonBytesPerPayload"],
  ["stored B/payload", "storedBytesPerPayload"],
  ["CPU ms/stored payload", "cpuMsPerStoredPayload"],
  ["fsyncs", "fsyncs"],
  ["fsync p50 ms", "fsyncP50Ms"],
  ["fsync p99 ms", "fsyncP99Ms"],
  ["journal peak MB", "journalPeakMb"]
]
process.stdout.write("\n" + columns.map(([h]) => h).join(" | ") + "\n")
for (const row of rows) process.stdout.write(columns.map(([, k]) => String(row[k])).join(" | ") + "\n")
