/**
 * HAProxy (Debian's package) in front of replicas on loopback, with the production config
 * `deploy/haproxy/haproxy.cfg` and its addresses from the environment. A second, test-only config
 * file adds a stats page on loopback, so a test can wait for what the health checks decided
 * (a server UP or DOWN) instead of guessing how long they take.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { call } from "./http.js"
import { freePort } from "./service.js"
import { waitFor } from "./wait.js"

export const HAPROXY_CFG = resolve(import.meta.dirname, "../../deploy/haproxy/haproxy.cfg")
/** The backend and its servers as the config names them. */
export const BACKEND = "replicas"
export const SERVERS = ["replica1", "replica2", "replica3"] as const
export type ServerName = (typeof SERVERS)[number]

/** HAProxy's connection limit in tests (see `-n` below). */
const TEST_MAXCONN = 4096

/** True when `haproxy` runs from PATH. */
export const haproxyOnPath = (): boolean => spawnSync("haproxy", ["-v"]).status === 0

export interface RunningHaproxy {
  readonly child: ChildProcess
  /** The frontend's port on 127.0.0.1. */
  readonly port: number
  /** HAProxy's stdout and stderr so far. */
  readonly output: () => string
  /** Resolves with the exit code (or 128 + 15 after SIGTERM). */
  readonly exited: Promise<number>
  /** Each server's status as the stats page shows it: UP, DOWN, "UP 1/2" (rising), … */
  readonly serverStatus: () => Promise<Map<string, string>>
  /** Waits until every server named in `wanted` has exactly that status. */
  readonly waitForStatus: (wanted: Partial<Record<ServerName, "UP" | "DOWN">>, timeoutMs?: number) => Promise<void>
  /** SIGTERM (HAProxy's hard stop) and its exit. */
  readonly stop: () => Promise<number>
}

/** The `status` of each server of `BACKEND` in HAProxy's CSV stats. */
export const parseStatsCsv = (csv: string): Map<string, string> => {
  const [head = "", ...rows] = csv.split("\n")
  const columns = head.replace(/^# /, "").split(",")
  const px = columns.indexOf("pxname")
  const sv = columns.indexOf("svname")
  const status = columns.indexOf("status")
  const servers = new Map<string, string>()
  for (const row of rows) {
    const cells = row.split(",")
    const name = cells[sv]
    if (cells[px] === BACKEND && name !== undefined && name !== "BACKEND" && name !== "FRONTEND") {
      servers.set(name, cells[status] ?? "")
    }
  }
  return servers
}

/**
 * Starts `haproxy -db` (foreground) on `frontendPort` with REPLICA_1..3 = `replicas`
 * (`host:port` each; a closed port makes a server the health checks take DOWN).
 */
export const startHaproxy = async (
  frontendPort: number,
  replicas: readonly [string, string, string]
): Promise<RunningHaproxy> => {
  const statsPort = await freePort()
  const dir = mkdtempSync(join(tmpdir(), "s3-ingest-haproxy-"))
  const overlay = join(dir, "stats.cfg")
  writeFileSync(
    overlay,
    [
      "# Test-only: the stats page, read by the test to see the health checks' decisions.",
      "frontend stats",
      `    bind 127.0.0.1:${statsPort}`,
      "    stats enable",
      "    stats uri /stats",
      ""
    ].join("\n")
  )
  // `-n` takes precedence over the config's `maxconn 20000`, which needs about 40k file descriptors:
  // more than a container's hard nofile limit may allow (20000 without CAP_SYS_RESOURCE), and then
  // HAProxy refuses to start. A rehearsal on loopback needs a few dozen connections.
  const child = spawn("haproxy", ["-f", HAPROXY_CFG, "-f", overlay, "-db", "-n", String(TEST_MAXCONN)], {
    env: {
      PATH: process.env.PATH ?? "",
      FRONTEND_BIND: `127.0.0.1:${frontendPort}`,
      REPLICA_1: replicas[0],
      REPLICA_2: replicas[1],
      REPLICA_3: replicas[2]
    },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  const collect = (chunk: string) => {
    output += chunk
  }
  child.stdout!.setEncoding("utf8").on("data", collect)
  child.stderr!.setEncoding("utf8").on("data", collect)
  const exited = new Promise<number>((done) => {
    child.once("error", (error) => {
      collect(`spawn failed: ${error.message}\n`)
      done(127)
    })
    child.once("exit", (code, signal) => done(code ?? (signal === "SIGTERM" ? 143 : signal === "SIGKILL" ? 137 : 128)))
  }).finally(() => rmSync(dir, { recursive: true, force: true }))
  let exitCode: number | undefined
  void exited.then((code) => {
    exitCode = code
  })

  const serverStatus = async () => {
    const reply = await call(statsPort, { method: "GET", path: "/stats;csv" })
    if (reply.status !== 200) throw new Error(`HAProxy stats answered ${reply.status}`)
    return parseStatsCsv(reply.text)
  }
  const haproxy: RunningHaproxy = {
    child,
    port: frontendPort,
    output: () => output,
    exited,
    serverStatus,
    waitForStatus: async (wanted, timeoutMs = 10_000) => {
      let last = new Map<string, string>()
      await waitFor(`HAProxy to see ${JSON.stringify(wanted)}`, async () => {
        if (exitCode !== undefined) throw new Error(`HAProxy exited with ${exitCode}: ${output}`)
        last = await serverStatus()
        return Object.entries(wanted).every(([name, status]) => last.get(name) === status) || undefined
      }, timeoutMs, 50).catch((error: Error) => {
        throw new Error(`${error.message}; last seen ${JSON.stringify([...last])}`)
      })
    },
    stop: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM")
      return exited
    }
  }
  try {
    await waitFor("HAProxy's stats page", async () => {
      if (exitCode !== undefined) throw new Error(`HAProxy exited with ${exitCode}: ${output}`)
      return serverStatus().then(() => true, () => undefined)
    }, 10_000, 25)
  } catch (error) {
    await haproxy.stop()
    throw error
  }
  return haproxy
}
