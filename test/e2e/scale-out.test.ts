/**
 * The scale-out rehearsal: three replicas behind HAProxy (deploy/haproxy/haproxy.cfg) on loopback,
 * one s3rver bucket under one prefix, eight keep-alive clients posting collections of 1–5 payloads
 * with globally unique ids through HAProxy's frontend.
 *
 * First a throughput sanity check: 3 s of load (after 1 s of warm-up) with 1, 2 and 3 replicas in
 * rotation (the others point at a closed port, so the health checks take them DOWN). On two cores
 * the replicas, HAProxy, s3rver and the clients share the CPU: the numbers are printed, not judged.
 *
 * Then the rolling restart under load: each replica in turn gets SIGTERM (its /readyz turns 503,
 * HAProxy's 1 s check takes it out of rotation within SHUTDOWN_DELAY_MS, then its intake closes and
 * it drains), must exit 0, and is started again on its DATA_DIR and port; the next one goes only
 * once HAProxy routes to it again. Then the clients stop and every replica gets SIGTERM (exit 0).
 *
 * The clients: 202 is an acknowledgement; 503 (a replica draining or starting, or HAProxy with no
 * server) means not admitted, so the same ids are sent again after Retry-After; 502/504 (HAProxy
 * lost the replica's answer) and a connection error are unknown outcomes, never sent again; any
 * other status is a refusal. The oracle by payload id (test/support/idOracle.ts) over every object
 * under the prefix and every replica's dead-letter directory: every acknowledged id stored exactly
 * once, no refused id stored, an unknown one at most once, no line twice, nothing foreign.
 *
 * Needs `haproxy` on PATH (Debian's package); skipped without it unless REQUIRE_DEPLOY_TOOLS=1.
 */
import { randomUUID } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, inject, it } from "vitest"
import { haproxyOnPath, type RunningHaproxy, SERVERS, type ServerName, startHaproxy } from "../support/haproxy.js"
import { call } from "../support/http.js"
import { checkIds, type IdCounts, type SentRequest } from "../support/idOracle.js"
import { type Load, startKeepAliveLoad } from "../support/keepAliveLoad.js"
import { makeTestS3Client } from "../support/s3.js"
import { freePort, type RunningService, s3rverEnv, startService } from "../support/service.js"
import { linesInBucket, linesInDir, textTable } from "../support/storedLines.js"
import { sleep, waitFor } from "../support/wait.js"

const s3Endpoint = inject("s3Endpoint")
const s3Bucket = inject("s3Bucket")
const runId = randomUUID().slice(0, 8)
const hasHaproxy = haproxyOnPath()
const requireTools = process.env.REQUIRE_DEPLOY_TOOLS === "1"

const CLIENTS = 8
const THROUGHPUT_MS = 3_000
/** Load before the throughput window opens: replicas that have not served yet warm up first. */
const WARMUP_MS = 1_000
/** Retry-After is honoured up to 1 s only, to keep the test short (a draining replica may ask for more). */
const MAX_RETRY_WAIT_MS = 1_000
const REPLICA_ENV: Record<string, string> = {
  BATCH_MAX_WAIT_MS: "50",
  SHUTDOWN_TIMEOUT_MS: "5000",
  // Longer than HAProxy's 1 s check interval: a draining replica leaves the rotation before its intake closes.
  SHUTDOWN_DELAY_MS: "1500"
}

interface Replica {
  readonly name: ServerName
  readonly port: number
  readonly dataDir: string
  service: RunningService
}

/** Requests of one phase by how their attempts were answered. */
interface PhaseCounts {
  requests: number
  ackedPayloads: number
  /** Payloads acknowledged within [measureFrom, measureUntil], for the throughput. */
  measured: number
  measureFrom: number
  measureUntil: number
  status503: number
  resent: number
  connErrors: number
  gateway: number
  other: number
}

interface Live { load: Load | undefined; haproxy: RunningHaproxy | undefined; services: Array<RunningService> }
const nothingLive = (): Live => ({ load: undefined, haproxy: undefined, services: [] })
let live = nothingLive()

afterEach(async () => {
  // A failed assertion must leave no child and no client behind.
  await live.load?.stop()
  await Promise.all(live.services.map((service) => service.stop("SIGKILL")))
  await live.haproxy?.stop()
  live = nothingLive()
})

const withDeadline = <T>(promise: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([promise, sleep(ms).then((): never => {
    throw new Error(`${what} did not happen within ${ms} ms`)
  })])

const readyz = (port: number): Promise<true | undefined> =>
  call(port, { method: "GET", path: "/readyz" }).then((reply) => reply.status === 200 || undefined, () => undefined)

/** `count` distinct free loopback ports. */
const freePorts = async (count: number): Promise<Array<number>> => {
  const ports = new Set<number>()
  while (ports.size < count) ports.add(await freePort())
  return [...ports]
}

describe("scale-out: three replicas behind HAProxy", () => {
  it.runIf(hasHaproxy || requireTools)(
    "rolling restart under keep-alive load: every 202'd payload stored exactly once, every exit 0",
    { timeout: 90_000 },
    async () => {
      expect(hasHaproxy, "haproxy on PATH (apt-get install --no-install-recommends haproxy)").toBe(true)
      const startedAt = Date.now()
      const prefix = `scale-out-${runId}`
      const ports = await freePorts(2 + SERVERS.length)
      const [frontendPort, closedPort, replicaPorts] = [ports[0]!, ports[1]!, ports.slice(2)]
      const address = (port: number) => `127.0.0.1:${port}`
      const spawnReplica = async (replica: Omit<Replica, "service">) => {
        const service = await startService({
          ...s3rverEnv(s3Endpoint, s3Bucket, prefix),
          ...REPLICA_ENV,
          PORT: String(replica.port),
          DATA_DIR: replica.dataDir
        })
        live.services.push(service)
        return service
      }
      const replicas: Array<Replica> = await Promise.all(SERVERS.map(async (name, i) => {
        const spec = { name, port: replicaPorts[i]!, dataDir: mkdtempSync(join(tmpdir(), `s3-ingest-scale-${name}-`)) }
        return { ...spec, service: await spawnReplica(spec) }
      }))
      const instances = replicas.map((replica) => [replica.service])
      for (const replica of replicas) await waitFor(`${replica.name} ready`, () => readyz(replica.port), 20_000)

      // The ledger: every request by its final outcome, every attempt counted by phase.
      const sent: Array<SentRequest> = []
      const phases = new Map<string, PhaseCounts>()
      let phase = ""
      let nextId = 1
      const startLoad = (port: number) =>
        startKeepAliveLoad<SentRequest>({
          clients: CLIENTS,
          port: () => port,
          retry503: { maxWaitMs: MAX_RETRY_WAIT_MS },
          next: (client) => {
            const ids = Array.from({ length: 1 + Math.floor(Math.random() * 5) }, () => nextId++)
            const request: SentRequest = { ids, group: phase, outcome: "unknown", answer: "" }
            sent.push(request)
            phases.get(phase)!.requests++
            const data = ids.map((id) => ({ id, c: client, f: `scale-out ${runId}` }))
            return { tag: request, body: JSON.stringify({ version: "1", token: "scale-out", data }) }
          },
          onResult: (request, { status, error, at }) => {
            const counts = phases.get(request.group)!
            if (request.answer === "503") counts.resent++
            request.answer = status === undefined ? String(error) : String(status)
            if (status === 202) {
              request.outcome = "acked"
              counts.ackedPayloads += request.ids.length
              if (at >= counts.measureFrom && at <= counts.measureUntil) counts.measured += request.ids.length
            } else if (status === undefined || status === 502 || status === 504) {
              request.outcome = "unknown"
              if (status === undefined) counts.connErrors++
              else counts.gateway++
            } else {
              request.outcome = "refused"
              if (status === 503) counts.status503++
              else counts.other++
            }
          }
        })
      const runPhase = async (name: string, port: number, warmupMs: number, during: () => Promise<void>) => {
        phase = name
        const counts: PhaseCounts = { requests: 0, ackedPayloads: 0, measured: 0, status503: 0, resent: 0,
          connErrors: 0, gateway: 0, other: 0, measureFrom: Date.now() + warmupMs, measureUntil: Number.POSITIVE_INFINITY }
        phases.set(name, counts)
        live.load = startLoad(port)
        await during()
        counts.measureUntil = Date.now()
        await live.load.stop()
        live.load = undefined
      }

      // Throughput with 1, 2 and 3 replicas in rotation; the last HAProxy stays for the rehearsal.
      let haproxy: RunningHaproxy | undefined
      for (const n of [1, 2, 3]) {
        await haproxy?.stop()
        const addresses = replicas.map((replica, i) => address(i < n ? replica.port : closedPort))
        haproxy = await startHaproxy(frontendPort, [addresses[0]!, addresses[1]!, addresses[2]!])
        live.haproxy = haproxy
        await haproxy.waitForStatus(Object.fromEntries(SERVERS.map((name, i) => [name, i < n ? "UP" : "DOWN"])))
        const name = `${n} replica${n === 1 ? "" : "s"}`
        await runPhase(name, frontendPort, WARMUP_MS, () => sleep(WARMUP_MS + THROUGHPUT_MS))
      }
      const balancer = haproxy!

      // The rolling restart under load.
      const restarts: Array<Record<string, string | number>> = []
      await runPhase("rolling restart", frontendPort, 0, async () => {
        const acked = () => phases.get("rolling restart")!.ackedPayloads
        await waitFor("a 202 through HAProxy", () => acked() > 0 || undefined)
        for (const replica of replicas) {
          const before = acked()
          const signalledAt = Date.now()
          const exit = replica.service.stop("SIGTERM")
          // Its /readyz answers 503 at once: HAProxy's next check takes it out of rotation.
          await balancer.waitForStatus({ [replica.name]: "DOWN" }, 5_000)
          const downAt = Date.now()
          const code = await withDeadline(exit, 10_000, `${replica.name} exit after SIGTERM`)
          const exitedAt = Date.now()
          const summary = replica.service.logs.find((line) => line.message === "shutdown")
          replica.service = await spawnReplica(replica)
          instances[replicas.indexOf(replica)]!.push(replica.service)
          await waitFor(`${replica.name} ready again`, () => readyz(replica.port), 20_000)
          const readyAt = Date.now()
          await balancer.waitForStatus({ [replica.name]: "UP" }, 10_000)
          restarts.push({
            replica: replica.name,
            exit: code,
            accepted: Number(summary?.accepted ?? Number.NaN),
            stored: Number(summary?.stored ?? Number.NaN),
            downInHaproxyMs: downAt - signalledAt,
            exitMs: exitedAt - signalledAt,
            readyMs: readyAt - exitedAt,
            upInHaproxyMs: Date.now() - readyAt,
            ackedMeanwhile: acked() - before
          })
        }
        // Some load with all three back in rotation.
        const settled = acked()
        await waitFor("202s after the last restart", () => acked() > settled + 200 || undefined, 10_000)
      })

      // Every replica stops; then HAProxy.
      const finalExits = await Promise.all(replicas.map((replica) =>
        withDeadline(replica.service.stop("SIGTERM"), 10_000, `${replica.name} exit after the final SIGTERM`)
      ))
      await balancer.stop()
      live.haproxy = undefined

      // The oracle.
      const s3 = makeTestS3Client(s3Endpoint)
      const objects = await linesInBucket(s3, s3Bucket, prefix).finally(() => s3.destroy())
      const deadLetter = replicas.flatMap((replica) => linesInDir(join(replica.dataDir, "dead-letter"), `${replica.name}/dead-letter`))
      const report = checkIds(sent, [...objects, ...deadLetter])
      const counts = (name: string): IdCounts | undefined => report.byGroup.get(name)
      console.log(
        `scale-out rehearsal: ${Math.round((Date.now() - startedAt) / 100) / 10} s, ${sent.length} requests, ` +
          `${objects.length} lines stored in ${prefix}/, ${deadLetter.length} dead-lettered; ` +
          `exit codes: restarts [${restarts.map((r) => r.exit).join(", ")}], final [${finalExits.join(", ")}]`
      )
      console.log(textTable([...phases].map(([name, c]) => ({
        phase: name,
        s: ((c.measureUntil - c.measureFrom) / 1000).toFixed(1),
        requests: c.requests,
        "payloads/s": Math.round(c.measured / ((c.measureUntil - c.measureFrom) / 1000)),
        acked: counts(name)?.acked,
        stored: counts(name)?.stored,
        dup: counts(name)?.duplicated,
        lost: counts(name)?.lost,
        "503s": c.status503,
        resent: c.resent,
        connErr: c.connErrors,
        "502/504": c.gateway,
        other: c.other,
        refused: counts(name)?.refused,
        refusedStored: counts(name)?.refusedStored,
        unanswered: counts(name)?.unanswered,
        unansweredStored: counts(name)?.unansweredStored
      }))))
      console.log(textTable(restarts))

      const problems = report.lost.length + report.duplicated.length + report.refusedStored.length +
        report.unansweredTwice.length + report.repeatedLines.length + report.foreign.length + deadLetter.length
      const exits = [...restarts.map((r) => r.exit), ...finalExits]
      if (problems === 0 && exits.every((code) => code === 0)) {
        for (const replica of replicas) rmSync(replica.dataDir, { recursive: true, force: true })
      } else {
        const notable = instances.flatMap((list, r) =>
          list.flatMap((instance, i) =>
            instance.logs.filter((l) => l.level !== "info" || ["draining", "shutdown", "queue drained"].includes(l.message))
              .map((l) => `${SERVERS[r]}#${i} ${JSON.stringify(l)}`)
          )
        )
        console.log(`scale-out found problems; DATA_DIRs ${replicas.map((r) => r.dataDir).join(" ")}\n${notable.join("\n")}`)
      }

      const first = (list: ReadonlyArray<string>) => list.slice(0, 20).join("\n")
      expect(report.lost, `acknowledged ids never stored:\n${first(report.lost)}`).toEqual([])
      expect(report.duplicated, `acknowledged ids stored more than once:\n${first(report.duplicated)}`).toEqual([])
      expect(report.refusedStored, `refused ids stored:\n${first(report.refusedStored)}`).toEqual([])
      expect(report.unansweredTwice, `unanswered ids stored twice:\n${first(report.unansweredTwice)}`).toEqual([])
      expect(report.repeatedLines, "NDJSON lines stored twice").toEqual([])
      expect(report.foreign, "lines with ids never sent").toEqual([])
      expect(deadLetter.map((f) => f.where), "nothing dead-lettered").toEqual([])
      expect(exits, "every SIGTERM exits 0 (restarts, then the final stop)").toEqual([0, 0, 0, 0, 0, 0])
      for (const [name, c] of phases) expect(c.ackedPayloads, `payloads acknowledged with ${name}`).toBeGreaterThan(0)
    }
  )
})
