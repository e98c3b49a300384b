/**
 * Runs a command of the built CLI (`node dist/main.js …`) as a child process, asynchronously (a
 * loopback store or proxy in the test's own process must keep answering meanwhile), and parses
 * its JSON log lines.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { type LogLine, MAIN, readLogLines } from "./service.js"

export interface CliRun {
  readonly child: ChildProcess
  /** The log lines so far (stdout, one JSON object a line). */
  readonly logs: Array<LogLine>
  readonly stderr: () => string
  /** The exit code, or null when a signal ended it; rejects past the guard time. */
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  /** Resolves with the first log line with `message`; rejects if the process ends without it. */
  readonly logged: (message: string) => Promise<LogLine>
}

/** Starts `node dist/main.js ...args` with only PATH and `env`; kills it after `guardMs`. */
export const runCli = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>>, guardMs = 30_000): CliRun => {
  const child = spawn(process.execPath, [MAIN, ...args], {
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const logs: Array<LogLine> = []
  interface Waiter {
    readonly message: string
    readonly done: (line: LogLine) => void
    readonly fail: (error: Error) => void
  }
  const waiters: Array<Waiter> = []
  let stderr = ""
  readLogLines(child.stdout!, (line) => {
    logs.push(line)
    for (const waiter of waiters.filter((w) => w.message === line.message)) {
      waiters.splice(waiters.indexOf(waiter), 1)
      waiter.done(line)
    }
  })
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    const guard = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`${args.join(" ")} still running after ${guardMs} ms: ${stderr}`))
    }, guardMs)
    child.once("close", (code, signal) => {
      clearTimeout(guard)
      for (const waiter of waiters.splice(0)) waiter.fail(new Error(`exited (${code}) before logging "${waiter.message}"`))
      resolve({ code, signal })
    })
  })
  const logged = (message: string) =>
    new Promise<LogLine>((done, fail) => {
      const line = logs.find((l) => l.message === message)
      if (line !== undefined) done(line)
      else if (child.exitCode !== null || child.signalCode !== null) fail(new Error(`exited before logging "${message}"`))
      else waiters.push({ message, done, fail })
    })
  return { child, logs, stderr: () => stderr, exited, logged }
}
