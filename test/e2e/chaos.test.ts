/**
 * Chaos scenarios, end to end: the built service runs
 * as a child process, with STORAGE=s3 against s3rver behind a fault proxy the test switches at
 * run time (SlowDown storms, connection resets, hangs, 500s after the write applied, 403s), or
 * with STORAGE=local and STORE_FAULTS (defects, a dead-letter directory that cannot be written).
 *
 * The oracle of every scenario: each payload answered 202 is, after the service exited, either
 * stored exactly once (in the bucket under the scenario's prefix, or under DATA_DIR/objects) or
 * in DATA_DIR/dead-letter — by id — never both, never missing, never duplicated; nothing that
 * was refused shows up; the `shutdown` log line adds up (accepted = 202'd payloads, stored +
 * deadLettered + lost = accepted, and each matches what is on disk / in the bucket); the child's
 * RSS stays under a generous bound.
 *
 * Beyond the storms, two scenarios pin the breaker's own contract: sparse failures
 * must be *consecutive* to open it (a′), and a probe that dies must not leave it half-open (g′).
 *
 * The short forms run in CI (each scenario bounded to a few seconds). The long form
 * (`CHAOS_LONG=1`) runs the SlowDown storm and the outage for 20 s each.
 */
import { randomUUID } from "node:crypto"
import { readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import type { S3Client } from "@aws-sdk/client-s3"
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest"
import { type FaultProxy, startFaultProxy } from "../support/faultProxy.js"
import { call as httpCall, type Reply } from "../support/http.js"
import { getObject, listKeys, makeTestS3Client } from "../support/s3.js"
import { type LogLine, ndjsonText, readLines, type RunningService, s3rverEnv, startService } from "../support/service.js"
import { sleep, waitFor } from "../support/wait.js"

const s3Endpoint = inject("s3Endpoint")
const s3Bucket = inject("s3Bucket")

/**
 * The scenarios whose oracle is the shutdown's dead-lettering run with `DURABILITY=memory`: with
 * the journal, what is not stored at shutdown stays journaled instead (test/e2e/crash, shutdown).
 */
const DEAD_LETTER_AT_SHUTDOWN = { DURABILITY: "memory" } as const

/** Unique per run, so objects of other files and runs never count. */
const runId = randomUUID().slice(0, 8)

/** Generous: the service idles at ~60–90 MB; a leak or an unbounded queue would pass it. */
const RSS_BOUND_MB = 400


// ---------------------------------------------------------------------------------------------
// Harness

interface Ledger {
  /** Ids of payloads answered 202. */
  readonly acked: Set<string>
  /** Ids of payloads in collections refused (any other status, or no answer). */
  readonly refused: Set<string>
  readonly statuses: Map<string, number>
  next: number
}

const newLedger = (): Ledger => ({ acked: new Set(), refused: new Set(), statuses: new Map(), next: 0 })

interface RssSampler {
  readonly stop: () => { readonly peakMb: number; readonly samples: number }
}

/** Reads VmRSS of `pid` from /proc every `everyMs`, keeping the peak. */
const sampleRss = (pid: number, everyMs = 200): RssSampler => {
  let peakKb = 0
  let samples = 0
  const read = () => {
    try {
      const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
      if (m !== null) {
        peakKb = Math.max(peakKb, Number(m[1]))
        samples++
      }
    } catch {
      // the process has gone
    }
  }
  read()
  const timer = setInterval(read, everyMs)
  return {
    stop: () => {
      clearInterval(timer)
      return { peakMb: Math.round(peakKb / 102.4) / 10, samples }
    }
  }
}

interface Scenario {
  readonly label: string
  readonly service: RunningService
  readonly proxy: FaultProxy | undefined
  readonly prefix: string
  readonly storage: "s3" | "local"
  readonly ledger: Ledger
  readonly rss: RssSampler
  readonly startedAt: number
}

let client: S3Client
const live: Array<{ service: RunningService; proxy: FaultProxy | undefined; rss: RssSampler }> = []
const dataDirs: Array<string> = []

interface Row {
  scenario: string
  result: "pass" | "fail"
  acknowledged: number
  stored: number
  deadLettered: number
  lost: number
  duplicated: number
  both: number
  unexpected: number
  objects: number
  peakRssMb: number
  rssSamples: number
  exitCode: number
  exitMs: number
  seconds: number
  notes: string
}
const rows: Array<Row> = []

beforeAll(() => {
  client = makeTestS3Client(s3Endpoint)
})

afterEach(async () => {
  // A failed assertion must not leave a child or a proxy behind.
  for (const { service, proxy, rss } of live.splice(0)) {
    rss.stop()
    await service.stop("SIGKILL")
    await proxy?.close()
  }
})

afterAll(() => {
  client.destroy()
  if (process.env.CHAOS_KEEP === undefined) {
    for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true })
  }
  if (rows.length > 0) {
    console.log(`chaos summary (RSS bound ${RSS_BOUND_MB} MB):`)
    console.table(rows)
  }
})

const baseS3Env = (proxy: FaultProxy, prefix: string): Record<string, string> =>
  s3rverEnv(proxy.endpoint, s3Bucket, prefix)

const commonEnv: Record<string, string> = {
  MAX_WORKERS: "4",
  BATCH_MAX_ITEMS: "50",
  BATCH_MAX_WAIT_MS: "20",
  BREAKER_COOLDOWN_MS: "200",
  UPLOAD_TIMEOUT_MS: "2000",
  SHUTDOWN_TIMEOUT_MS: "10000"
}

const begin = async (
  label: string,
  options: {
    readonly storage: "s3" | "local"
    readonly proxyMode?: Parameters<FaultProxy["set"]>[0]
    readonly env?: Record<string, string>
  }
): Promise<Scenario> => {
  const startedAt = Date.now()
  const prefix = `chaos-${runId}-${label}`
  const proxy = options.storage === "s3" ? await startFaultProxy(s3Endpoint, options.proxyMode ?? "pass") : undefined
  let service: RunningService
  try {
    service = await startService({
      ...(proxy === undefined ? { STORAGE: "local", S3_PREFIX: prefix } : baseS3Env(proxy, prefix)),
      ...commonEnv,
      ...options.env
    })
  } catch (error) {
    await proxy?.close()
    throw error
  }
  const pid = service.child.pid
  const rss = sampleRss(pid ?? 0)
  live.push({ service, proxy, rss })
  dataDirs.push(service.dataDir)
  if (pid === undefined) throw new Error("child has no pid")
  return { label, service, proxy, prefix, storage: options.storage, ledger: newLedger(), rss, startedAt }
}

/**
 * One request to the service on a connection of its own (`Connection: close`): no kept-alive
 * socket of the test holds the service's listener open during its drain, so exit times measure
 * the service, not the test's connection pool.
 */
const call = (s: Scenario, method: string, path: string, body?: string): Promise<Reply> =>
  httpCall(s.service.port, {
    method,
    path,
    ...(body === undefined ? {} : { body, headers: { "content-type": "application/json" } })
  })

/** Posts one collection of `count` payloads with fresh ids; returns the status (0: no answer). */
const post = async (s: Scenario, count: number): Promise<number> => {
  const ids = Array.from({ length: count }, () => `${runId}-${s.label}-${s.ledger.next++}`)
  const data = ids.map((id, i) => ({ id, i, text: "chaos ☃", pad: "x".repeat(48) }))
  let status = 0
  try {
    status = (await call(s, "POST", "/v1/payloads", JSON.stringify({ version: "1.4", token: "chaos", data }))).status
  } catch {
    status = 0
  }
  const into = status === 202 ? s.ledger.acked : s.ledger.refused
  for (const id of ids) into.add(id)
  s.ledger.statuses.set(String(status), (s.ledger.statuses.get(String(status)) ?? 0) + 1)
  return status
}

/** Posts collections one after another, `pauseMs` apart, for `ms`. */
const postFor = async (s: Scenario, ms: number, perCollection = 10, pauseMs = 10) => {
  const until = Date.now() + ms
  while (Date.now() < until) {
    await post(s, perCollection)
    await sleep(pauseMs)
  }
}

const metricsText = async (s: Scenario): Promise<string> => (await call(s, "GET", "/metrics")).text

/** One sample of `name` (with exactly `labels`, e.g. `outcome="error"`); NaN when absent. */
const metric = (text: string, name: string, labels = ""): number => {
  const head = labels === "" ? `${name} ` : `${name}{${labels}} `
  const line = text.split("\n").find((l) => l.startsWith(head))
  return line === undefined ? Number.NaN : Number(line.slice(head.length))
}

const readyStatus = async (s: Scenario): Promise<number> => (await call(s, "GET", "/readyz")).status


/** Until nothing is queued or in flight and the counters add up. */
const waitIdle = (s: Scenario, timeoutMs: number) =>
  waitFor("the queue to drain", async () => {
    const text = await metricsText(s)
    const queued = metric(text, "s3ingest_queue_payloads")
    const inFlight = metric(text, "s3ingest_payloads_in_flight")
    const accepted = metric(text, "s3ingest_payloads_accepted_total")
    const settled = metric(text, "s3ingest_payloads_stored_total") +
      metric(text, "s3ingest_payloads_dead_lettered_total") + metric(text, "s3ingest_payloads_lost_total")
    return queued === 0 && inFlight === 0 && accepted === settled ? text : undefined
  }, timeoutMs, 50)

/** Samples readiness and the breaker gauge in the background. */
const watchHealth = (s: Scenario, everyMs = 50) => {
  const seen = { ready: new Map<number, number>(), breaker: new Map<number, number>(), samples: 0 }
  let running = true
  const loop = (async () => {
    while (running) {
      try {
        const status = await readyStatus(s)
        const breaker = metric(await metricsText(s), "s3ingest_store_breaker_state")
        seen.ready.set(status, (seen.ready.get(status) ?? 0) + 1)
        seen.breaker.set(breaker, (seen.breaker.get(breaker) ?? 0) + 1)
        seen.samples++
      } catch {
        // the service is going away
      }
      await sleep(everyMs)
    }
  })()
  return {
    seen,
    stop: async () => {
      running = false
      await loop
      return seen
    }
  }
}

const withTimeout = <T>(promise: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([
    promise,
    sleep(ms).then((): never => {
      throw new Error(`${what} did not happen within ${ms} ms`)
    })
  ])

interface Summary {
  readonly accepted: number
  readonly stored: number
  readonly deadLettered: number
  readonly lost: number
}

interface Outcome {
  readonly exitCode: number
  /** From SIGTERM to exit. */
  readonly exitMs: number
  readonly summary: Summary | undefined
  readonly peakRssMb: number
  readonly rssSamples: number
  readonly objects: number
  /** Lines found in the store / dead-letter, all ids. */
  readonly storedLines: number
  readonly deadLetterLines: number
  readonly acknowledged: number
  /** 202'd ids found exactly once, in the store / in dead-letter. */
  readonly stored: number
  readonly deadLettered: number
  /** 202'd ids found nowhere. */
  readonly missing: ReadonlyArray<string>
  /** 202'd ids found more than once (both places included). */
  readonly duplicated: ReadonlyArray<string>
  /** 202'd ids in the store and in dead-letter. */
  readonly both: ReadonlyArray<string>
  /** Ids found that were never acknowledged (refused collections, or foreign). */
  readonly unexpected: ReadonlyArray<string>
}

const idsOf = (lines: ReadonlyArray<Record<string, unknown>>): Array<string> =>
  lines.map((line) => String(line.id))

/** Reads every object under the scenario's prefix: keys and the payload ids they hold. */
const storedIds = async (s: Scenario): Promise<{ objects: number; ids: Array<string> }> => {
  if (s.storage === "local") {
    return { objects: -1, ids: idsOf(readLines(join(s.service.dataDir, "objects"))) }
  }
  const keys = await listKeys(client, s3Bucket, `${s.prefix}/`)
  const ids: Array<string> = []
  // A few GETs at a time: s3rver is on loopback, a few hundred objects at most.
  for (let i = 0; i < keys.length; i += 8) {
    const slice = keys.slice(i, i + 8)
    const bodies = await Promise.all(slice.map((key) => getObject(client, s3Bucket, key)))
    for (const [k, { body }] of bodies.entries()) {
      const text = ndjsonText(slice[k]!, body)
      for (const line of text.split("\n")) if (line !== "") ids.push(String((JSON.parse(line) as { id: unknown }).id))
    }
  }
  return { objects: keys.length, ids }
}

/** SIGTERMs (unless already exited), waits for the exit, and runs the oracle. */
const finish = async (s: Scenario, exitWithinMs: number): Promise<Outcome> => {
  const signalledAt = Date.now()
  const exitCode = await withTimeout(s.service.stop("SIGTERM"), exitWithinMs, "exit after SIGTERM")
  const exitMs = Date.now() - signalledAt
  const rss = s.rss.stop()
  const shutdown = s.service.logs.filter((line: LogLine) => line.message === "shutdown")
  const last = shutdown[shutdown.length - 1]
  const summary: Summary | undefined = last === undefined ? undefined : {
    accepted: Number(last.accepted),
    stored: Number(last.stored),
    deadLettered: Number(last.deadLettered),
    lost: Number(last.lost)
  }
  const inStore = await storedIds(s)
  const inDeadLetter = idsOf(readLines(join(s.service.dataDir, "dead-letter")))
  const storeCount = new Map<string, number>()
  const deadCount = new Map<string, number>()
  for (const id of inStore.ids) storeCount.set(id, (storeCount.get(id) ?? 0) + 1)
  for (const id of inDeadLetter) deadCount.set(id, (deadCount.get(id) ?? 0) + 1)
  const missing: Array<string> = []
  const duplicated: Array<string> = []
  const both: Array<string> = []
  let stored = 0
  let deadLettered = 0
  for (const id of s.ledger.acked) {
    const inS = storeCount.get(id) ?? 0
    const inD = deadCount.get(id) ?? 0
    if (inS + inD === 0) missing.push(id)
    if (inS + inD > 1) duplicated.push(id)
    if (inS > 0 && inD > 0) both.push(id)
    if (inS === 1 && inD === 0) stored++
    if (inD === 1 && inS === 0) deadLettered++
  }
  const unexpected = [...new Set([...storeCount.keys(), ...deadCount.keys()])].filter((id) => !s.ledger.acked.has(id))
  const outcome: Outcome = {
    exitCode,
    exitMs,
    summary,
    peakRssMb: rss.peakMb,
    rssSamples: rss.samples,
    objects: inStore.objects,
    storedLines: inStore.ids.length,
    deadLetterLines: inDeadLetter.length,
    acknowledged: s.ledger.acked.size,
    stored,
    deadLettered,
    missing,
    duplicated,
    both,
    unexpected
  }
  rows.push({
    scenario: s.label,
    result: "fail", // set to pass by `pass()` once every assertion held
    acknowledged: outcome.acknowledged,
    stored,
    deadLettered,
    lost: missing.length,
    duplicated: duplicated.length,
    both: both.length,
    unexpected: unexpected.length,
    objects: inStore.objects,
    peakRssMb: rss.peakMb,
    rssSamples: rss.samples,
    exitCode,
    exitMs,
    seconds: Math.round((Date.now() - s.startedAt) / 100) / 10,
    notes: ""
  })
  return outcome
}

/** Adds a measurement to the scenario's row of the summary table. */
const note = (s: Scenario, text: string) => {
  const row = rows.find((r) => r.scenario === s.label)
  if (row !== undefined) row.notes = row.notes === "" ? text : `${row.notes}; ${text}`
}

const pass = (s: Scenario) => {
  const row = rows.find((r) => r.scenario === s.label)
  if (row !== undefined) row.result = "pass"
}

/**
 * The oracle shared by every scenario. `lostAllowed`: only where a dead-letter write is made to
 * fail may an acknowledged payload be found nowhere, and then exactly `summary.lost` of them.
 */
const expectAccounted = (s: Scenario, o: Outcome, options: { readonly lostAllowed?: boolean } = {}) => {
  expect(o.acknowledged, "some payloads were acknowledged").toBeGreaterThan(0)
  expect(o.duplicated.slice(0, 10), "acknowledged payloads stored or dead-lettered more than once").toEqual([])
  expect(o.both.slice(0, 10), "acknowledged payloads both stored and dead-lettered").toEqual([])
  expect(o.unexpected.slice(0, 10), "payloads stored that were never acknowledged").toEqual([])
  expect(o.summary, `one "shutdown" log line; stderr: ${s.service.stderr()}`).toBeDefined()
  const summary = o.summary!
  expect(summary.accepted, "shutdown.accepted = payloads answered 202").toBe(o.acknowledged)
  expect(summary.stored + summary.deadLettered + summary.lost, "stored + deadLettered + lost = accepted")
    .toBe(summary.accepted)
  // The counters describe what is really there.
  expect(o.storedLines, "stored lines = shutdown.stored").toBe(summary.stored)
  expect(o.deadLetterLines, "dead-letter lines = shutdown.deadLettered").toBe(summary.deadLettered)
  if (options.lostAllowed === true) {
    expect(o.missing.length, "payloads found nowhere = shutdown.lost").toBe(summary.lost)
  } else {
    expect(o.missing.slice(0, 10), "acknowledged payloads neither stored nor dead-lettered").toEqual([])
    expect(summary.lost).toBe(0)
  }
  expect(o.rssSamples, "RSS was sampled").toBeGreaterThanOrEqual(3)
  expect(o.peakRssMb, `peak RSS under ${RSS_BOUND_MB} MB`).toBeLessThan(RSS_BOUND_MB)
  // The exit code follows the summary.
  expect(o.exitCode, "exit code: 0 clean, 1 dead-lettered, 2 lost").toBe(
    summary.lost > 0 ? 2 : summary.deadLettered > 0 ? 1 : 0
  )
}

const logCount = (s: Scenario, message: string, from = 0) =>
  s.service.logs.slice(from).filter((line) => line.message === message).length

// ---------------------------------------------------------------------------------------------
// Scenario bodies, shared by the short and the long forms

/** (a) A fraction of PUTs answer 503 SlowDown for `stormMs`, then the store recovers. */
const slowDownStorm = async (label: string, stormMs: number) => {
  const s = await begin(label, {
    storage: "s3",
    proxyMode: { mode: "slowdown", fraction: 0.5 },
    // A batch is dead-lettered only after UPLOAD_RETRIES + 1 failed attempts with the breaker
    // closed: at 50 % SlowDown that is p = 2^-21 per batch here, so "none dead-lettered" is a
    // property of the service, not of luck. With the default 5, a batch that met six attempts
    // with the breaker closed would be dead-lettered with p = 1/64, which the retry policy allows.
    env: { UPLOAD_RETRIES: "20" }
  })
  await postFor(s, stormMs)
  s.proxy!.set("pass")
  await postFor(s, 300)
  const text = await waitIdle(s, 20_000)
  const errors = metric(text, "s3ingest_upload_attempts_total", `outcome="error"`)
  const slowdowns = s.proxy!.counts().byOutcome.slowdown
  const o = await finish(s, 15_000)
  note(s, `${slowdowns} SlowDowns, ${errors} failed attempts, breaker opened ${logCount(s, "store breaker open")}×`)
  expect(slowdowns, "the proxy answered SlowDown").toBeGreaterThan(0)
  expect(errors, `s3ingest_upload_attempts_total{outcome="error"}`).toBeGreaterThan(0)
  expect(o.exitCode).toBe(0)
  expect(o.deadLettered).toBe(0)
  expect(o.stored).toBe(o.acknowledged)
  expectAccounted(s, o)
  pass(s)
}

/** (b) Every connection is reset for `outageMs`, then the store recovers. */
const outage = async (label: string, outageMs: number) => {
  const s = await begin(label, { storage: "s3", proxyMode: "pass" })
  await postFor(s, 300)
  await waitIdle(s, 5_000)
  expect(await readyStatus(s)).toBe(200)
  s.proxy!.set("outage")
  const during = watchHealth(s)
  await postFor(s, outageMs, 10, 20)
  const seenDuring = await during.stop()
  s.proxy!.set("pass")
  const recoveredIn = Date.now()
  // After the outage the next probe closes the breaker: cooldowns double per failed probe, so
  // it may be up to one cooldown (≤ 2 × the outage, capped at 30 s) away.
  await waitFor("/readyz 200 after the outage", async () => (await readyStatus(s)) === 200 ? true : undefined,
    Math.min(30_000, 2 * outageMs) + 5_000)
  const recoveryMs = Date.now() - recoveredIn
  await postFor(s, 200)
  const text = await waitIdle(s, 20_000)
  const counts = s.proxy!.counts()
  const o = await finish(s, 15_000)
  note(
    s,
    `${counts.byOutcome.reset + counts.connectionsReset} resets; during the outage /readyz ${
      JSON.stringify(Object.fromEntries(seenDuring.ready))
    }, breaker gauge ${JSON.stringify(Object.fromEntries(seenDuring.breaker))}; ready ${recoveryMs} ms after recovery`
  )
  expect(counts.byOutcome.reset + counts.connectionsReset, "the proxy reset connections").toBeGreaterThan(0)
  expect(seenDuring.ready.get(503) ?? 0, "/readyz answered 503 during the outage").toBeGreaterThan(0)
  expect(seenDuring.breaker.get(2) ?? 0, "s3ingest_store_breaker_state read 2 during the outage").toBeGreaterThan(0)
  expect(metric(text, "s3ingest_store_breaker_state"), "breaker closed after recovery").toBe(0)
  expect(recoveryMs).toBeLessThan(Math.min(30_000, 2 * outageMs) + 5_000)
  expect(o.exitCode).toBe(0)
  expect(o.deadLettered).toBe(0)
  expect(o.stored).toBe(o.acknowledged)
  expectAccounted(s, o)
  pass(s)
}

// ---------------------------------------------------------------------------------------------
// Short forms (CI)

describe("chaos (short forms)", () => {
  it("(a) SlowDown storm: 50 % of PUTs answer 503 SlowDown for 3 s, then pass: all stored, exit 0", async () => {
    await slowDownStorm("a-slowdown", 3_000)
  })

  it("(a′) sparse SlowDowns (15 %) never make BREAKER_FAILURES=8 consecutive failures: the breaker stays closed", async () => {
    // The breaker opens after BREAKER_FAILURES *consecutive* retryable failures. At
    // 15 % independent failures, eight in a row among ~250 attempts happens with p ≈ 5e-5;
    // eight in all (what a counter that successes do not reset sees) after ~55 attempts.
    const s = await begin("a2-sparse", {
      storage: "s3",
      proxyMode: { mode: "slowdown", fraction: 0.15 },
      env: { BATCH_MAX_ITEMS: "1", BREAKER_FAILURES: "8" }
    })
    const health = watchHealth(s)
    // One PUT per payload (BATCH_MAX_ITEMS=1): ~250 payloads make ~250 first attempts.
    const until = Date.now() + 3_000
    while (s.ledger.acked.size < 250 && Date.now() < until) {
      await post(s, 10)
      await sleep(20)
    }
    await waitIdle(s, 15_000)
    const seen = await health.stop()
    const counts = s.proxy!.counts()
    const o = await finish(s, 15_000)
    const openings = logCount(s, "store breaker open")
    note(
      s,
      `${counts.puts} PUTs, ${counts.byOutcome.slowdown} SlowDowns; breaker opened ${openings}×; /readyz ${
        JSON.stringify(Object.fromEntries(seen.ready))
      }`
    )
    expectAccounted(s, o)
    expect(o.stored).toBe(o.acknowledged)
    expect(counts.puts, "enough attempts to tell consecutive from cumulative").toBeGreaterThanOrEqual(150)
    expect(openings, "the breaker opened on non-consecutive failures").toBe(0)
    expect(seen.ready.get(503) ?? 0, "/readyz flapped to 503").toBe(0)
    pass(s)
  })

  it("(b) outage (connection reset) for 3 s, then recovery: /readyz 503 and breaker 2 during it, 200 after, all stored", async () => {
    await outage("b-outage", 3_000)
  })

  it("(c) hang: the client closes the socket at UPLOAD_TIMEOUT_MS, then the store recovers: stored", async () => {
    const s = await begin("c-hang", { storage: "s3", proxyMode: "hang", env: { UPLOAD_TIMEOUT_MS: "1000" } })
    expect(await post(s, 10)).toBe(202)
    const first = await waitFor("a request at the hanging proxy", async () => s.proxy!.hung[0], 5_000)
    const closedAt = await withTimeout(first.closed, 5_000, "the client closing the hung socket")
    const heldMs = closedAt - first.arrivedAt
    s.proxy!.set("pass")
    expect(await post(s, 10)).toBe(202)
    const text = await waitIdle(s, 15_000)
    const o = await finish(s, 15_000)
    note(s, `hung socket closed by the client ${heldMs} ms after the request arrived; ${s.proxy!.hung.length} hung requests`)
    expect(heldMs, "the hung socket was closed by the client at its deadline (1 s)").toBeGreaterThanOrEqual(800)
    expect(heldMs).toBeLessThanOrEqual(3_000)
    expect(metric(text, "s3ingest_upload_attempts_total", `outcome="timeout"`)).toBeGreaterThan(0)
    expect(o.stored).toBe(o.acknowledged)
    expect(o.exitCode).toBe(0)
    expectAccounted(s, o)
    pass(s)
  })

  it("(c′) slow body: an upload whose body trickles is cut at UPLOAD_TIMEOUT_MS and retried, then stored once", async () => {
    const s = await begin("c2-slow-body", {
      storage: "s3",
      proxyMode: "slow-body",
      // Plain objects: gzipped, the batch below would be a few hundred bytes and never trickle.
      env: { UPLOAD_TIMEOUT_MS: "1000", BATCH_MAX_ITEMS: "1000", OBJECT_COMPRESSION: "none" }
    })
    // One collection of about 22 KB, one batch: at 10 KB/s its body needs 2 s, the deadline is 1 s.
    expect(await post(s, 200)).toBe(202)
    await waitFor("an attempt cut at its deadline", async () => {
      const text = await metricsText(s)
      return metric(text, "s3ingest_upload_attempts_total", `outcome="timeout"`) > 0 ? true : undefined
    }, 10_000)
    s.proxy!.set("pass")
    await waitIdle(s, 20_000)
    const o = await finish(s, 15_000)
    note(s, `${s.proxy!.hung.length} slow uploads before the link recovered`)
    expect(o.stored).toBe(o.acknowledged)
    expect(o.exitCode).toBe(0)
    expectAccounted(s, o)
    pass(s)
  })

  it("(d) 500 after the write applied, then pass: every batch under one key, no duplicate ids", async () => {
    const s = await begin("d-applied-500", { storage: "s3", proxyMode: "applied-then-500" })
    await postFor(s, 1_500, 10, 20)
    s.proxy!.set("pass")
    await postFor(s, 200)
    const text = await waitIdle(s, 20_000)
    const objectsConfirmed = metric(text, "s3ingest_objects_stored_total")
    const counts = s.proxy!.counts()
    const o = await finish(s, 15_000)
    note(s, `${counts.byOutcome["applied-then-500"]} writes applied then 500; ${objectsConfirmed} objects confirmed`)
    expect(counts.byOutcome["applied-then-500"], "writes applied, then answered 500").toBeGreaterThan(0)
    // A retry under a new key would leave the applied object behind as an extra one.
    expect(o.objects, "objects in the bucket = objects the service confirmed").toBe(objectsConfirmed)
    expect(o.stored).toBe(o.acknowledged)
    expect(o.exitCode).toBe(0)
    expectAccounted(s, o)
    pass(s)
  })

  it("(e) permanent 403: breaker opens, the failing batch is dead-lettered, later ones held; SIGTERM: exit 1, all dead-lettered", async () => {
    const s = await begin("e-forbidden", {
      storage: "s3",
      proxyMode: "forbidden",
      // A cooldown longer than the scenario: the breaker stays open, so no probe takes a batch.
      env: { BREAKER_COOLDOWN_MS: "30000", SHUTDOWN_TIMEOUT_MS: "3000", ...DEAD_LETTER_AT_SHUTDOWN }
    })
    expect(await post(s, 5)).toBe(202)
    await waitFor("the failing batch in dead-letter", async () => {
      const text = await metricsText(s)
      return metric(text, "s3ingest_payloads_dead_lettered_total") === 5 ? true : undefined
    }, 5_000)
    const openText = await metricsText(s)
    expect(metric(openText, "s3ingest_store_breaker_state"), "breaker open").toBe(2)
    expect(await readyStatus(s), "/readyz while open").toBe(503)
    for (let i = 0; i < 5; i++) expect(await post(s, 10)).toBe(202)
    const heldText = await waitFor("the later batches held in flight", async () => {
      const text = await metricsText(s)
      return metric(text, "s3ingest_payloads_in_flight") + metric(text, "s3ingest_queue_payloads") === 50
        ? text
        : undefined
    }, 5_000)
    const counts = s.proxy!.counts()
    const o = await finish(s, 3_000 + 2_000)
    note(
      s,
      `${counts.puts} PUT(s) answered 403; while open: dead-lettered ${
        metric(heldText, "s3ingest_payloads_dead_lettered_total")
      }, held ${metric(heldText, "s3ingest_queue_payloads") + metric(heldText, "s3ingest_payloads_in_flight")}`
    )
    // The start-up store check (a HEAD) met the 403 too: count the PUTs.
    expect(counts.puts, "one attempt: no retry of a permanent error, none while open").toBe(1)
    expect(metric(heldText, "s3ingest_payloads_dead_lettered_total"), "later batches not dead-lettered").toBe(5)
    expect(
      metric(heldText, "s3ingest_queue_payloads") + metric(heldText, "s3ingest_payloads_in_flight"),
      "later batches held"
    ).toBe(50)
    expect(o.exitCode).toBe(1)
    expect(o.deadLettered).toBe(o.acknowledged)
    expect(o.summary?.stored).toBe(0)
    expectAccounted(s, o)
    pass(s)
  })

  it("(f) SIGTERM during an outage: exit 1 within SHUTDOWN_TIMEOUT_MS + 2 s, every 202'd payload dead-lettered", async () => {
    const s = await begin("f-sigterm-outage", {
      storage: "s3",
      proxyMode: "outage",
      env: { SHUTDOWN_TIMEOUT_MS: "3000", ...DEAD_LETTER_AT_SHUTDOWN }
    })
    await postFor(s, 700, 10, 20)
    const o = await finish(s, 3_000 + 2_000)
    note(s, `SIGTERM → exit ${o.exitMs} ms (budget 3000 + 2000)`)
    expect(o.exitMs).toBeLessThanOrEqual(3_000 + 2_000)
    expect(o.exitCode).toBe(1)
    expect(o.deadLettered).toBe(o.acknowledged)
    expectAccounted(s, o)
    pass(s)
  })

  it("(g) defects in half the uploads (local store): the service keeps serving, every 202'd id stored or dead-lettered", async () => {
    const s = await begin("g-defect", { storage: "local", env: { STORE_FAULTS: "defect=0.5" } })
    await postFor(s, 1_000, 10, 20)
    const statuses = [...s.ledger.statuses.keys()]
    const healthz = await call(s, "GET", "/healthz")
    expect(await post(s, 10), "still admitting after the defects").toBe(202)
    const text = await waitIdle(s, 15_000)
    const o = await finish(s, 15_000)
    note(s, `${logCount(s, "upload defect")} upload defects logged; statuses ${JSON.stringify(statuses)}`)
    expect(statuses, "every collection answered 202").toEqual(["202"])
    expect(healthz.status).toBe(200)
    expect(metric(text, "s3ingest_payloads_dead_lettered_total"), "defective uploads dead-lettered").toBeGreaterThan(0)
    expect([0, 1]).toContain(o.exitCode)
    expectAccounted(s, o)
    pass(s)
  })

  it("(g′) a defect in the half-open probe does not wedge the breaker: it keeps probing", async () => {
    // Every attempt either fails with a permanent AccessDenied (opens the breaker at once) or
    // dies with a defect. An open breaker probes after each cooldown (200, 400, 800,
    // 1600 ms); a probe that dies must not leave it half-open for good.
    const s = await begin("g2-probe-defect", {
      storage: "local",
      env: {
        STORE_FAULTS: "error=0.2:AccessDenied,defect=1",
        SHUTDOWN_TIMEOUT_MS: "3000",
        BATCH_MAX_ITEMS: "1",
        ...DEAD_LETTER_AT_SHUTDOWN
      }
    })
    const until = Date.now() + 5_000
    while (logCount(s, "store breaker open") === 0 && Date.now() < until) {
      await post(s, 1)
      await sleep(10)
    }
    const openedAt = s.service.logs.findIndex((line) => line.message === "store breaker open")
    expect(openedAt, "the breaker opened").toBeGreaterThanOrEqual(0)
    // Keep batches coming, so each probe has one to try: probes are due 0.2, 0.6 and 1.4 s
    // after the opening (the fourth at 3.0 s).
    await postFor(s, 2_500, 1, 50)
    const probes = logCount(s, "store breaker half-open", openedAt)
    const breaker = metric(await metricsText(s), "s3ingest_store_breaker_state")
    const o = await finish(s, 3_000 + 2_000)
    note(s, `${probes} probe(s) in the 2.5 s after the first opening; breaker gauge then ${breaker}`)
    expectAccounted(s, o)
    expect(o.exitCode).toBe(1)
    expect(probes, `probes in the 2.5 s after the first opening (breaker gauge at the end: ${breaker})`)
      .toBeGreaterThanOrEqual(3)
    pass(s)
  })

  it("(h) dead-letter directory not writable: a permanent error loses the batch, the summary says so, exit 2", async () => {
    const s = await begin("h-dead-letter-broken", {
      storage: "local",
      env: { STORE_FAULTS: "error=1:AccessDenied", SHUTDOWN_TIMEOUT_MS: "2000", ...DEAD_LETTER_AT_SHUTDOWN }
    })
    const deadLetterDir = join(s.service.dataDir, "dead-letter")
    rmSync(deadLetterDir, { recursive: true, force: true })
    writeFileSync(deadLetterDir, "not a directory\n")
    await postFor(s, 400, 10, 20)
    await waitFor("payloads counted lost", async () => {
      const text = await metricsText(s)
      return metric(text, "s3ingest_payloads_lost_total") > 0 ? true : undefined
    }, 5_000)
    const o = await finish(s, 2_000 + 2_000)
    note(s, `shutdown ${JSON.stringify(o.summary)}`)
    expect(o.summary?.lost, "shutdown summary reports lost payloads").toBeGreaterThan(0)
    expect(o.summary?.stored).toBe(0)
    expect(o.exitCode).toBe(2)
    expectAccounted(s, o, { lostAllowed: true })
    pass(s)
  })
})

// ---------------------------------------------------------------------------------------------
// Long forms (CHAOS_LONG=1; not in CI)

describe.skipIf(process.env.CHAOS_LONG === undefined)("chaos (long forms, CHAOS_LONG=1)", () => {
  it("(a) SlowDown storm for 20 s", { timeout: 120_000 }, async () => {
    await slowDownStorm("long-a-slowdown", 20_000)
  })

  it("(b) outage for 20 s, then recovery", { timeout: 180_000 }, async () => {
    await outage("long-b-outage", 20_000)
  })
})
