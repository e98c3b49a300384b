/**
 * `DATA_DIR/s3-ingest.lock`: the service and `replay` each hold it, so they never work on one
 * directory at once (DESIGN §6). The file records the owner's PID and process start time; a lock
 * whose PID is gone, or now belongs to another process (a restarted container reuses PIDs), is
 * stale and taken over.
 */
import { readFileSync } from "node:fs"
import { mkdir, readFile, rm, writeFile } from "node:fs/promises"
import { join } from "node:path"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { AppConfig } from "../services/AppConfig.js"

export class LockHeld extends Data.TaggedError("LockHeld")<{ readonly message: string }> {}

interface Owner {
  readonly pid: number
  readonly startTime: string
}

/** The kernel's start time of a process (clock ticks since boot), or "" where /proc is absent. */
export const processStartTime = (pid: number): string => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // Fields after the command name, which is in parentheses and may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return fields[19] ?? ""
  } catch {
    return ""
  }
}

const isAlive = (owner: Owner): boolean => {
  try {
    process.kill(owner.pid, 0)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false
  }
  const now = processStartTime(owner.pid)
  return owner.startTime === "" || now === "" || now === owner.startTime
}

const parseOwner = (text: string): Owner | undefined => {
  try {
    const value = JSON.parse(text) as { pid?: unknown; startTime?: unknown }
    return typeof value.pid === "number" && typeof value.startTime === "string"
      ? { pid: value.pid, startTime: value.startTime }
      : undefined
  } catch {
    return undefined
  }
}

const fsCall = <A>(what: string, f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (error) => new LockHeld({ message: `${what}: ${String(error)}` }) })

// node:fs rather than @effect/platform's FileSystem: the lock is taken before the first request,
// and the platform's error types would load effect/Schema on that path.
export const acquireDataDirLock = Effect.gen(function*() {
  const { dataDir } = yield* AppConfig
  const lockFile = join(dataDir, "s3-ingest.lock")
  const self: Owner = { pid: process.pid, startTime: processStartTime(process.pid) }

  yield* fsCall(lockFile, () => mkdir(dataDir, { recursive: true }))
  const existing = yield* Effect.option(fsCall(lockFile, () => readFile(lockFile, "utf8")))
  if (existing._tag === "Some") {
    const owner = parseOwner(existing.value)
    if (owner !== undefined && owner.pid !== process.pid && isAlive(owner)) {
      return yield* new LockHeld({ message: `${lockFile}: held by process ${owner.pid}` })
    }
    yield* Effect.logWarning("taking over a stale lock").pipe(Effect.annotateLogs({ lockFile }))
    yield* fsCall(lockFile, () => rm(lockFile, { force: true }))
  }
  // `wx`: exclusive create, so two starters racing for a stale lock cannot both win.
  yield* Effect.tryPromise({
    try: () => writeFile(lockFile, JSON.stringify(self) + "\n", { flag: "wx" }),
    catch: (error) =>
      new LockHeld({
        message: `${lockFile}: ${
          (error as NodeJS.ErrnoException).code === "EEXIST" ? "held by another process" : String(error)
        }`
      })
  })
  return lockFile
})

/** Holds the lock for the life of the layer; released (removed) when it closes. */
export const DataDirLockLive: Layer.Layer<never, LockHeld, AppConfig> = Layer.scopedDiscard(
  Effect.acquireRelease(acquireDataDirLock, (lockFile) =>
    Effect.promise(() => rm(lockFile, { force: true })).pipe(Effect.ignore))
)
