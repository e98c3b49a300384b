/**
 * The crash oracle: eight keep-alive clients post collections of 1–5 payloads with globally
 * unique integer ids, without pause, while the service is killed with SIGKILL five times at a
 * random moment 300–1500 ms after it became ready (every other round with slow uploads, so
 * batches are in flight), and restarted on the same DATA_DIR and port. After the last restart
 * the load stops, the queue drains, and SIGTERM must exit 0.
 *
 * The oracle, by payload id, over every stored object (DATA_DIR/objects, or the bucket under the
 * scenario's prefix) and DATA_DIR/dead-letter: every id answered 202 is stored exactly once, no id
 * of a refused collection is stored, an id whose request got no answer is stored at most once (it
 * is never sent again), no NDJSON line appears twice, nothing foreign appears. Per round it prints
 * what was acknowledged, stored, duplicated and lost, and how long recovery took.
 */
import { randomUUID } from "node:crypto"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, inject, it } from "vitest"
import { call } from "../support/http.js"
import type { IdCounts } from "../support/idOracle.js"
import { type Load, startKeepAliveLoad } from "../support/keepAliveLoad.js"
import { makeTestS3Client } from "../support/s3.js"
import { freePort, type LogLine, type RunningService, s3rverEnv, startService } from "../support/service.js"
import { linesInBucket, linesInDir, textTable } from "../support/storedLines.js"
import { sleep, waitFor } from "../support/wait.js"

const s3Endpoint = inject("s3Endpoint")
const s3Bucket = inject("s3Bucket")
const runId = randomUUID().slice(0, 8)

const KILLS = 5
const CLIENTS = 8
const SLOW_STORE = "latency=100ms±50"
const BASE_ENV: Record<string, string> = { BATCH_MAX_WAIT_MS: "50", BATCH_MAX_ITEMS: "50", SHUTDOWN_TIMEOUT_MS: "15000" }

type Outcome = "acked" | "refused" | "unknown"

interface Sent {
  readonly ids: ReadonlyArray<number>
  /** The service instance (0 = first start) during whose life the request was sent. */
  readonly round: number
  outcome: Outcome
  answer: string
}

/** One service instance's life: how it started (and recovered), when it was killed, and the fate of its ids. */
interface Round extends IdCounts {
  readonly round: number
  readonly faults: string
  /** From the spawn to the first `/readyz` 200. */
  readonly readyMs: number
  /** The `journal recovered` line's `ms`, `payloads` and `batches`, when there was one. */
  readonly recMs: number | undefined
  readonly recPayloads: number | undefined
  readonly recBatches: number | undefined
  /** Killed this long after ready, with this many payloads queued / in flight just before. */
  killAtMs: number | undefined
  queuedAtKill: number | undefined
  inFlightAtKill: number | undefined
  /** Requests not answered 202, by status or error code. */
  answers: string
}

const ZERO = { acked: 0, stored: 0, duplicated: 0, lost: 0, refused: 0, refusedStored: 0, unanswered: 0, unansweredStored: 0 }

let live: { service: RunningService | undefined; load: Load | undefined } = { service: undefined, load: undefined }

afterEach(async () => {
  // A failed assertion must leave no child and no client behind.
  await live.load?.stop()
  await live.service?.stop("SIGKILL")
  live = { service: undefined, load: undefined }
})

const withDeadline = <T>(promise: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([promise, sleep(ms).then((): never => {
    throw new Error(`${what} did not happen within ${ms} ms`)
  })])

/** One unlabelled sample of `name`; NaN when absent. */
const metric = (text: string, name: string): number => {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `))
  return line === undefined ? Number.NaN : Number(line.slice(name.length + 1))
}

const metricsOf = async (port: number): Promise<string> => (await call(port, { method: "GET", path: "/metrics" })).text

const readyz = async (port: number): Promise<true | undefined> => {
  try {
    return (await call(port, { method: "GET", path: "/readyz" })).status === 200 || undefined
  } catch {
    return undefined
  }
}

const scenario = async (storage: "local" | "s3") => {
  const startedAt = Date.now()
  const dataDir = mkdtempSync(join(tmpdir(), `s3-ingest-crash-${storage}-`))
  const prefix = `crash-${runId}-${storage}`
  const storeEnv = storage === "s3" ? s3rverEnv(s3Endpoint, s3Bucket, prefix) : {}
  const port = await freePort()
  const sent: Array<Sent> = []
  const ackedIn: Array<number> = []
  const rounds: Array<Round> = []
  const instances: Array<RunningService> = []
  let nextId = 1
  let round = 0

  const load = startKeepAliveLoad<Sent>({
    clients: CLIENTS,
    port: () => port,
    next: (client) => {
      const ids = Array.from({ length: 1 + Math.floor(Math.random() * 5) }, () => nextId++)
      const request: Sent = { ids, round, outcome: "unknown", answer: "" }
      sent.push(request)
      const data = ids.map((id) => ({ id, c: client, f: `crash ${runId} ☃` }))
      return { tag: request, body: JSON.stringify({ version: "1", token: "crash", data }) }
    },
    onResult: (request, result) => {
      request.answer = result.status === undefined ? String(result.error) : String(result.status)
      request.outcome = result.status === 202 ? "acked" : result.status === undefined ? "unknown" : "refused"
      if (request.outcome === "acked") ackedIn[request.round] = (ackedIn[request.round] ?? 0) + 1
    }
  })
  live.load = load

  for (let r = 0; r <= KILLS; r++) {
    round = r
    const faults = r % 2 === 1 && r < KILLS ? SLOW_STORE : ""
    const spawnedAt = Date.now()
    const service = await startService({
      ...storeEnv,
      ...BASE_ENV,
      ...(faults === "" ? {} : { STORE_FAULTS: faults }),
      PORT: String(port),
      DATA_DIR: dataDir
    })
    live.service = service
    instances.push(service)
    await waitFor(`/readyz 200 (round ${r})`, () => readyz(port), 20_000, 10)
    const readyAt = Date.now()
    const recovered = service.logs.find((line) => line.message === "journal recovered")
    const field = (name: string) => recovered === undefined ? undefined : Number(recovered[name])
    const row: Round = {
      round: r,
      faults,
      readyMs: readyAt - spawnedAt,
      recMs: field("ms"),
      recPayloads: field("payloads"),
      recBatches: field("batches"),
      killAtMs: undefined,
      queuedAtKill: undefined,
      inFlightAtKill: undefined,
      ...ZERO,
      answers: ""
    }
    rounds.push(row)
    await waitFor(`a 202 in round ${r}`, () => (ackedIn[r] ?? 0) > 0 || undefined, 10_000)
    if (r === KILLS) {
      await sleep(Math.max(0, readyAt + 500 - Date.now()))
      break
    }
    await sleep(Math.max(0, readyAt + 300 + Math.floor(Math.random() * 1200) - Date.now()))
    const text = await metricsOf(port)
    row.queuedAtKill = metric(text, "s3ingest_queue_payloads")
    row.inFlightAtKill = metric(text, "s3ingest_payloads_in_flight")
    row.killAtMs = Date.now() - readyAt
    expect(await withDeadline(service.stop("SIGKILL"), 5_000, "exit after SIGKILL")).toBe(137)
  }

  // The last instance: no more traffic, the queue drains, SIGTERM exits 0.
  await load.stop()
  live.load = undefined
  const final = instances[instances.length - 1]!
  let lastStored = -1
  const idle = await waitFor("an idle queue and a settled stored_total", async () => {
    const text = await metricsOf(port)
    const stored = metric(text, "s3ingest_payloads_stored_total")
    const settled = metric(text, "s3ingest_queue_payloads") === 0 && metric(text, "s3ingest_payloads_in_flight") === 0 &&
      stored === lastStored
    lastStored = stored
    return settled ? text : undefined
  }, 20_000, 150)
  const exitCode = await withDeadline(final.stop("SIGTERM"), 20_000, "exit after SIGTERM")
  const shutdown = final.logs.find((line) => line.message === "shutdown")

  // The oracle.
  const s3 = makeTestS3Client(s3Endpoint)
  const objects = storage === "local"
    ? linesInDir(join(dataDir, "objects"), "objects")
    : await linesInBucket(s3, s3Bucket, prefix).finally(() => s3.destroy())
  const deadLetter = linesInDir(join(dataDir, "dead-letter"), "dead-letter")
  const byId = new Map<number, Sent>()
  for (const request of sent) for (const id of request.ids) byId.set(id, request)
  const where = new Map<number, Array<string>>()
  const lineCount = new Map<string, number>()
  const foreign: Array<string> = []
  for (const { where: at, line } of [...objects, ...deadLetter]) {
    lineCount.set(line, (lineCount.get(line) ?? 0) + 1)
    const id = (JSON.parse(line) as { id?: unknown }).id
    if (typeof id !== "number" || !byId.has(id)) foreign.push(`${at}: ${line}`)
    else where.set(id, [...(where.get(id) ?? []), at])
  }
  const lost: Array<string> = []
  const duplicated: Array<string> = []
  const refusedStored: Array<string> = []
  const unansweredTwice: Array<string> = []
  const answers = rounds.map(() => new Map<string, number>())
  for (const request of sent) {
    const row = rounds[request.round]!
    const byAnswer = answers[request.round]!
    if (request.outcome !== "acked") byAnswer.set(request.answer, (byAnswer.get(request.answer) ?? 0) + 1)
    for (const id of request.ids) {
      const at = where.get(id) ?? []
      const detail = `id ${id} (round ${request.round}, answer ${request.answer}) at ${JSON.stringify(at)}`
      if (request.outcome === "acked") {
        row.acked++
        if (at.length === 1) row.stored++
        if (at.length === 0) {
          row.lost++
          lost.push(detail)
        }
        if (at.length > 1) {
          row.duplicated++
          duplicated.push(detail)
        }
      } else if (request.outcome === "refused") {
        row.refused++
        if (at.length > 0) {
          row.refusedStored++
          refusedStored.push(detail)
        }
      } else {
        row.unanswered++
        if (at.length > 0) row.unansweredStored++
        if (at.length > 1) unansweredTwice.push(detail)
      }
    }
  }
  for (const [r, byAnswer] of answers.entries()) rounds[r]!.answers = [...byAnswer].map(([a, n]) => `${a}×${n}`).join(" ")
  const repeatedLines = [...lineCount].filter(([, n]) => n > 1).map(([line, n]) => `${n}× ${line}`)
  const seconds = Math.round((Date.now() - startedAt) / 100) / 10
  console.log(`crash oracle, ${storage} store: ${KILLS} kills, ${seconds} s, ${sent.length} requests, ` +
    `${objects.length} lines stored, ${deadLetter.length} dead-lettered, exit ${exitCode}, ` +
    `final metrics: accepted ${metric(idle, "s3ingest_payloads_accepted_total")}, stored ${lastStored}, ` +
    `recovered ${metric(idle, "s3ingest_journal_recovered_payloads_total")}, ` +
    `journal bytes ${metric(idle, "s3ingest_journal_bytes")}; shutdown ${JSON.stringify(shutdown)}`)
  console.log(textTable(rounds))

  const problems = lost.length + duplicated.length + refusedStored.length + unansweredTwice.length +
    repeatedLines.length + foreign.length + deadLetter.length
  if (problems === 0 && exitCode === 0) {
    rmSync(dataDir, { recursive: true, force: true })
  } else {
    // Kept for a post-mortem: DATA_DIR and every instance's log.
    const logDir = `${dataDir}.logs`
    mkdirSync(logDir, { recursive: true })
    for (const [i, instance] of instances.entries()) {
      writeFileSync(join(logDir, `instance-${i}.ndjson`), instance.logs.map((l: LogLine) => JSON.stringify(l)).join("\n"))
      writeFileSync(join(logDir, `instance-${i}.stderr`), instance.stderr())
    }
    const notable = instances.flatMap((instance, i) =>
      instance.logs.filter((l) => l.level !== "info" || l.message.startsWith("journal")).map((l) => `#${i} ${JSON.stringify(l)}`)
    )
    console.log(`crash oracle (${storage}) found problems; DATA_DIR ${dataDir}, logs ${logDir}\n${notable.join("\n")}`)
  }

  const first = (list: ReadonlyArray<string>) => list.slice(0, 20).join("\n")
  expect(lost, `acknowledged ids never stored:\n${first(lost)}`).toEqual([])
  expect(duplicated, `acknowledged ids stored more than once:\n${first(duplicated)}`).toEqual([])
  expect(refusedStored, `refused ids stored:\n${first(refusedStored)}`).toEqual([])
  expect(unansweredTwice, `unanswered ids stored twice:\n${first(unansweredTwice)}`).toEqual([])
  expect(repeatedLines, "NDJSON lines stored twice").toEqual([])
  expect(foreign, "lines with ids never sent").toEqual([])
  expect(deadLetter.map((f) => f.where), "nothing dead-lettered").toEqual([])
  expect(rounds.reduce((n, r) => n + r.acked, 0)).toBeGreaterThan(0)
  expect(exitCode, "SIGTERM after the drain exits 0").toBe(0)
  expect(shutdown).toMatchObject({ deadLettered: 0, lost: 0 })
}

describe("crash oracle: kill -9 under keep-alive load, restart on the same DATA_DIR", () => {
  it("local store: every 202'd payload stored exactly once across 5 kills", { timeout: 60_000 }, async () => {
    await scenario("local")
  })

  it("s3rver: every 202'd payload stored exactly once across 5 kills", { timeout: 60_000 }, async () => {
    await scenario("s3")
  })
})
