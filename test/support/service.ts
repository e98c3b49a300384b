/**
 * Runs the built service (`node dist/main.js service`) as a child process on a free loopback
 * port with its own DATA_DIR, and reads its JSON log lines.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { gunzipSync } from "node:zlib"
import { sleep } from "./wait.js"

export const MAIN = resolve(import.meta.dirname, "../../dist/main.js")

/** A service storing in s3rver (or a proxy in front of it) at `endpoint`, under `prefix`. */
export const s3rverEnv = (endpoint: string, bucket: string, prefix: string): Record<string, string> => ({
  STORAGE: "s3",
  S3_BUCKET: bucket,
  S3_ENDPOINT: endpoint,
  S3_FORCE_PATH_STYLE: "true",
  S3_PREFIX: prefix,
  AWS_ACCESS_KEY_ID: "S3RVER",
  AWS_SECRET_ACCESS_KEY: "S3RVER",
  AWS_REGION: "us-east-1"
})

export const freePort = (): Promise<number> =>
  new Promise((done, fail) => {
    const probe = createServer()
    probe.once("error", fail)
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      probe.close(() => done(port))
    })
  })

export interface LogLine {
  readonly message: string
  readonly level: string
  readonly [field: string]: unknown
}

export interface RunningService {
  readonly child: ChildProcess
  readonly port: number
  readonly url: string
  readonly dataDir: string
  readonly logs: Array<LogLine>
  readonly stderr: () => string
  /** Resolves with the exit code (or 128 + signal number). */
  readonly exited: Promise<number>
  readonly stop: (signal?: NodeJS.Signals) => Promise<number>
}

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 2, SIGKILL: 9, SIGTERM: 15 }

/** Calls `onLine` with each JSON log line the stream carries. */
export const readLogLines = (stream: NodeJS.ReadableStream, onLine: (line: LogLine) => void): void => {
  let pending = ""
  stream.setEncoding("utf8")
  stream.on("data", (chunk: string) => {
    pending += chunk
    let newline: number
    while ((newline = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, newline)
      pending = pending.slice(newline + 1)
      if (line.trim() !== "") onLine(JSON.parse(line) as LogLine)
    }
  })
}

/** Starts `main` (by default this checkout's built service) with `env` over the defaults. */
export const startService = async (env: Record<string, string> = {}, main = MAIN): Promise<RunningService> => {
  const port = await freePort()
  const dataDir = env.DATA_DIR ?? mkdtempSync(join(tmpdir(), "s3-ingest-e2e-"))
  const child = spawn(process.execPath, [main, "service"], {
    env: { PATH: process.env.PATH ?? "", HOST: "127.0.0.1", PORT: String(port), DATA_DIR: dataDir, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const logs: Array<LogLine> = []
  let stderr = ""
  readLogLines(child.stdout!, (line) => logs.push(line))
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk
  })
  const exited = new Promise<number>((done) =>
    child.once("exit", (code, signal) => done(code ?? 128 + (signal === null ? 0 : SIGNAL_NUMBERS[signal] ?? 0)))
  )
  const service: RunningService = {
    child,
    port,
    url: `http://127.0.0.1:${port}`,
    dataDir,
    logs,
    stderr: () => stderr,
    exited,
    stop: (signal = "SIGTERM") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return exited
    }
  }
  const deadline = Date.now() + 15_000
  while (!logs.some((line) => line.message === "listening")) {
    if (child.exitCode !== null) throw new Error(`service exited with ${child.exitCode}: ${stderr}`)
    if (Date.now() > deadline) {
      child.kill("SIGKILL")
      throw new Error(`service did not start: ${stderr}`)
    }
    await sleep(20)
  }
  return service
}

/** Every file under `dir`, recursively, as paths relative to it. */
export const listFiles = (dir: string): Array<string> => {
  const out: Array<string> = []
  const walk = (relative: string) => {
    let entries: Array<string>
    try {
      entries = readdirSync(join(dir, relative))
    } catch {
      return
    }
    for (const entry of entries) {
      const path = join(relative, entry)
      if (statSync(join(dir, path)).isDirectory()) walk(path)
      else out.push(path)
    }
  }
  walk("")
  return out.sort()
}

/** An object's NDJSON text: inflated when its name (or key) ends in `.gz`. */
export const ndjsonText = (name: string, bytes: Uint8Array): string =>
  (name.endsWith(".gz") ? gunzipSync(bytes) : Buffer.from(bytes)).toString("utf8")

/** Every NDJSON line stored under `dir` (gzipped or not), parsed. */
export const readLines = (dir: string): Array<Record<string, unknown>> =>
  listFiles(dir).flatMap((file) =>
    ndjsonText(file, readFileSync(join(dir, file))).split("\n").filter((line) => line !== "").map((line) =>
      JSON.parse(line) as Record<string, unknown>
    )
  )

export const postJson = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${url}/v1/payloads`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body)
  })
