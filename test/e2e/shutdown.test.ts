/**
 * SIGTERM in the middle of a load of keep-alive clients: every 202'd payload is
 * stored exactly once, nothing refused is stored, every request on an accepted connection is
 * answered, and the process exits 0 with a `shutdown` summary that adds up.
 */
import { Agent } from "node:http"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { postJsonTo } from "../support/http.js"
import { readLines, type RunningService, startService } from "../support/service.js"
import { waitFor } from "../support/wait.js"

interface Outcome {
  readonly ids: ReadonlyArray<string>
  readonly status: number | undefined
  readonly error: string | undefined
  readonly connection: string | undefined
  /** `Date.now()` when the request was sent. */
  readonly sentAt: number
}

const post = (agent: Agent, port: number, ids: ReadonlyArray<string>): Promise<Outcome> => {
  const body = JSON.stringify({ version: "1", token: "t", data: ids.map((id) => ({ id, pad: "x".repeat(64) })) })
  const sentAt = Date.now()
  return postJsonTo(port, body, { agent }).then(
    (reply) => ({ ids, status: reply.status, error: undefined, connection: reply.headers.connection, sentAt }),
    (error: NodeJS.ErrnoException) => ({ ids, status: undefined, error: error.code ?? error.message, connection: undefined, sentAt })
  )
}

let service: RunningService | undefined
afterEach(async () => {
  await service?.stop("SIGKILL")
  service = undefined
})

describe("graceful shutdown", () => {
  it("SIGTERM under keep-alive load: every 202'd payload stored once, every request answered, exit 0", async () => {
    service = await startService({ BATCH_MAX_WAIT_MS: "50", SHUTDOWN_TIMEOUT_MS: "15000" })
    const { port } = service
    const clients = 8
    const perRequest = 5
    let sent = 0
    const outcomes: Array<Outcome> = []

    const client = async (c: number) => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 })
      for (let n = 0;; n++) {
        const ids = Array.from({ length: perRequest }, (_, i) => `${c}-${n}-${i}`)
        sent++
        const outcome = await post(agent, port, ids)
        outcomes.push(outcome)
        // Keep going through the drain (503s); stop once connections are refused or reset.
        if (outcome.error !== undefined) break
      }
      agent.destroy()
    }

    const load = Promise.all(Array.from({ length: clients }, (_, c) => client(c)))
    await waitFor("400 requests sent", () => sent >= 400 || undefined)
    const signalledAt = Date.now()
    const code = await service.stop("SIGTERM")
    await load
    expect(code).toBe(0)
    // The signal came in the middle of the load: requests sent after it were still answered.
    expect(outcomes.filter((o) => o.sentAt > signalledAt && o.status !== undefined).length).toBeGreaterThan(0)

    const accepted = outcomes.filter((o) => o.status === 202)
    const refused = outcomes.filter((o) => o.status !== undefined && o.status !== 202)
    const failed = outcomes.filter((o) => o.error !== undefined)
    expect(accepted.length).toBeGreaterThan(50)
    // Refusals during the drain are 503 with Connection: close; nothing else is refused here.
    expect(refused.every((o) => o.status === 503 && o.connection === "close")).toBe(true)
    // Requests without an answer are only each client's last, sent as the listener closed:
    // refused, or reset from the kernel's accept backlog, never read by the service.
    expect(failed.every((o) => o.error === "ECONNREFUSED" || o.error === "ECONNRESET")).toBe(true)
    expect(failed.length).toBeLessThanOrEqual(clients)
    const failedIds = new Set(failed.flatMap((o) => o.ids))

    const storedIds = readLines(join(service.dataDir, "objects")).map((line) => String(line.id))
    const counts = new Map<string, number>()
    for (const id of storedIds) counts.set(id, (counts.get(id) ?? 0) + 1)
    const acceptedIds = accepted.flatMap((o) => o.ids)
    for (const id of acceptedIds) expect(counts.get(id), `payload ${id}`).toBe(1)
    expect(storedIds.length).toBe(acceptedIds.length)
    expect(storedIds.filter((id) => failedIds.has(id))).toEqual([])

    const summary = service.logs.find((line) => line.message === "shutdown")
    expect(summary).toMatchObject({
      accepted: acceptedIds.length,
      stored: acceptedIds.length,
      deadLettered: 0,
      lost: 0
    })
    const order = service.logs.map((line) => line.message).filter((m) =>
      ["draining", "queue drained", "listener closed", "shutdown"].includes(m)
    )
    expect(order).toEqual(["draining", "queue drained", "listener closed", "shutdown"])
  })

  it("SHUTDOWN_DELAY_MS keeps intake open while readiness is already false", async () => {
    service = await startService({ SHUTDOWN_DELAY_MS: "1500" })
    service.child.kill("SIGTERM")
    const url = service.url
    await waitFor("/readyz 503 after the signal", async () => (await fetch(`${url}/readyz`)).status === 503 || undefined)
    const health = await fetch(`${service.url}/healthz`)
    expect(health.status).toBe(200)
    const during = await fetch(`${service.url}/v1/payloads`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ version: "1", token: "t", data: [{ id: "delayed" }] })
    })
    expect(during.status).toBe(202)
    expect(await service.exited).toBe(0)
    expect(readLines(join(service.dataDir, "objects")).map((l) => l.id)).toEqual(["delayed"])
  })

  it("exits 1 and dead-letters what a stalled store never took, within the budget", async () => {
    const { createServer } = await import("node:net")
    const sockets: Array<import("node:net").Socket> = []
    const stall = createServer((socket) => void sockets.push(socket))
    await new Promise<void>((r) => stall.listen(0, "127.0.0.1", r))
    const address = stall.address()
    const stallPort = typeof address === "object" && address !== null ? address.port : 0
    try {
      service = await startService({
        STORAGE: "s3",
        S3_BUCKET: "stalled",
        S3_ENDPOINT: `http://127.0.0.1:${stallPort}`,
        S3_FORCE_PATH_STYLE: "true",
        AWS_ACCESS_KEY_ID: "x",
        AWS_SECRET_ACCESS_KEY: "x",
        UPLOAD_TIMEOUT_MS: "60000",
        SHUTDOWN_TIMEOUT_MS: "3000",
        BATCH_MAX_WAIT_MS: "0",
        // With the journal nothing is dead-lettered at shutdown: the journal case is below.
        DURABILITY: "memory"
      })
      const ids = Array.from({ length: 20 }, (_, i) => ({ id: `dl-${i}` }))
      const res = await fetch(`${service.url}/v1/payloads`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ version: "1", token: "t", data: ids })
      })
      expect(res.status).toBe(202)
      const started = Date.now()
      const code = await service.stop("SIGTERM")
      expect(Date.now() - started).toBeLessThan(3000 + 2000)
      expect(code).toBe(1)
      const dead = readLines(join(service.dataDir, "dead-letter")).map((l) => l.id).sort()
      expect(dead).toEqual(ids.map((p) => p.id).sort())
      expect(service.logs.find((l) => l.message === "shutdown")).toMatchObject({
        accepted: 20,
        stored: 0,
        deadLettered: 20,
        lost: 0
      })
    } finally {
      for (const socket of sockets) socket.destroy()
      stall.close()
    }
  })

  it("with the journal: exits 1 leaving what was not stored journaled, and the next start stores it", async () => {
    // A local store whose every upload fails for a while: nothing is stored before the signal.
    service = await startService({ STORE_FAULTS: "hang=1", SHUTDOWN_TIMEOUT_MS: "3000", BATCH_MAX_WAIT_MS: "0" })
    const dataDir = service.dataDir
    const ids = Array.from({ length: 20 }, (_, i) => ({ id: `j-${i}` }))
    const res = await postJsonTo(service.port, JSON.stringify({ version: "1", token: "t", data: ids }))
    expect(res.status).toBe(202)
    expect(await service.stop("SIGTERM")).toBe(1)
    expect(service.logs.find((l) => l.message === "shutdown")).toMatchObject({
      accepted: 20,
      stored: 0,
      deadLettered: 0,
      journaled: 20,
      lost: 0
    })
    expect(readLines(join(dataDir, "dead-letter"))).toEqual([])

    service = await startService({ DATA_DIR: dataDir })
    const restarted = service
    await waitFor("the journaled payloads stored", async () =>
      readLines(join(dataDir, "objects")).length >= 20 ? true : undefined)
    expect(restarted.logs.find((l) => l.message === "journal recovered")).toMatchObject({ payloads: 20 })
    expect(await restarted.stop("SIGTERM")).toBe(0)
    expect(readLines(join(dataDir, "objects")).map((l) => l.id).sort()).toEqual(ids.map((p) => p.id).sort())
    expect(restarted.logs.find((l) => l.message === "shutdown")).toMatchObject({ recovered: 20, stored: 20, journaled: 0 })
  })
})
