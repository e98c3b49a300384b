/**
 * DATA_DIR: made ready before anything writes to it, and held by one process at a time.
 *
 * `DATA_DIR/s3-ingest.lock` is held by the service and by `replay`, so they never work on one
 * directory at once. It records the owner's PID and process start time: a lock whose PID is
 * gone, is a zombie (killed, not yet reaped by its parent), or now names another process (a
 * restarted container reuses PIDs) is stale and taken over.
 *
 * node:fs rather than @effect/platform's FileSystem: this runs before the first request, and the
 * platform's error types would load effect/Schema on that path.
 */
import { readFileSync } from "node:fs"
import { mkdir, readFile, rm, stat, writeFile } from "node:fs/promises"
import { dirname, join, resolve } from "node:path"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { DataDirUnusable, LockHeld } from "../domain/DataDirErrors.js"
import { AppConfig } from "../services/AppConfig.js"

const errorCode = (error: unknown): string | undefined => (error as NodeJS.ErrnoException | null)?.code

const unusable = (what: string) => (error: unknown) =>
  new DataDirUnusable({
    problem: `${what} (${error instanceof Error ? error.message : String(error)})`,
    cause: error
  })

/**
 * The file-system entry at `path`, or undefined when there is none (ENOTDIR too: a parent is a
 * file, which the walk up finds and names).
 */
const statOf = (path: string) =>
  Effect.tryPromise({
    try: () =>
      stat(path).catch((error: unknown) =>
        errorCode(error) === "ENOENT" || errorCode(error) === "ENOTDIR" ? undefined : Promise.reject(error)
      ),
    catch: unusable(`cannot read ${path}`)
  })

/**
 * Creates `dir` and its missing parents one level at a time: Node's recursive `mkdir` loops
 * forever where `mkdir` answers ENOENT under a parent that exists (procfs, `/proc/x`).
 */
export const ensureDirectory = (dir: string): Effect.Effect<void, DataDirUnusable> =>
  Effect.gen(function*() {
    const missing: Array<string> = []
    let current = resolve(dir)
    while (true) {
      const entry = yield* statOf(current)
      if (entry !== undefined) {
        if (!entry.isDirectory()) return yield* new DataDirUnusable({ problem: `${current} is not a directory` })
        break
      }
      missing.push(current)
      const parent = dirname(current)
      if (parent === current) break
      current = parent
    }
    for (const path of missing.reverse()) {
      yield* Effect.tryPromise({
        try: () => mkdir(path).catch((error: unknown) => errorCode(error) === "EEXIST" ? undefined : Promise.reject(error)),
        catch: unusable(`cannot create ${path}`)
      })
    }
  })

interface Owner {
  readonly pid: number
  readonly startTime: string
}

interface ProcessFacts {
  /** One letter: R running, S sleeping, Z zombie, X dead, … */
  readonly state: string
  /** Clock ticks since boot. */
  readonly startTime: string
}

/** What `/proc/<pid>/stat` says of a process, or undefined where there is no such entry. */
export const processFacts = (pid: number): ProcessFacts | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // Fields after the command name, which is in parentheses and may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return { state: fields[0] ?? "", startTime: fields[19] ?? "" }
  } catch {
    return undefined
  }
}

/** The kernel's start time of a process, or "" where /proc is absent. */
export const processStartTime = (pid: number): string => processFacts(pid)?.startTime ?? ""

const isAlive = (owner: Owner): boolean => {
  try {
    process.kill(owner.pid, 0)
  } catch (error) {
    if (errorCode(error) !== "EPERM") return false
  }
  const facts = processFacts(owner.pid)
  if (facts === undefined) return true // no /proc: the signal said it exists
  // A zombie has exited and holds nothing; its PID lingers only until its parent reaps it.
  if (facts.state === "Z" || facts.state === "X") return false
  return owner.startTime === "" || facts.startTime === owner.startTime
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

export interface LockOptions {
  /** Create DATA_DIR when it does not exist (the service), or refuse (`replay`, which reads it). */
  readonly create: boolean
}

export const acquireDataDirLock = (options: LockOptions) =>
  Effect.gen(function*() {
    const { dataDir } = yield* AppConfig
    const lockFile = join(dataDir, "s3-ingest.lock")
    const self: Owner = { pid: process.pid, startTime: processStartTime(process.pid) }

    if (options.create) {
      yield* ensureDirectory(dataDir)
    } else {
      const entry = yield* statOf(dataDir)
      if (entry === undefined) return yield* new DataDirUnusable({ problem: "it does not exist" })
      if (!entry.isDirectory()) return yield* new DataDirUnusable({ problem: "it is not a directory" })
    }
    const readLock = Effect.tryPromise({
      try: () =>
        readFile(lockFile, "utf8").catch((error: unknown) =>
          errorCode(error) === "ENOENT" ? undefined : Promise.reject(error)
        ),
      catch: unusable(`cannot read ${lockFile}`)
    })
    const existing = yield* readLock
    if (existing !== undefined) {
      const owner = parseOwner(existing)
      if (owner !== undefined && owner.pid !== process.pid && isAlive(owner)) {
        return yield* new LockHeld({ lockFile, pid: owner.pid })
      }
      yield* Effect.logWarning("taking over a stale lock").pipe(
        Effect.annotateLogs({ lockFile, ...(owner === undefined ? {} : { pid: owner.pid }) })
      )
      yield* Effect.tryPromise({
        try: () => rm(lockFile, { force: true }),
        catch: unusable(`cannot remove the stale ${lockFile}`)
      })
    }
    // `wx`: exclusive create, so two starters racing for a stale lock cannot both win.
    const written = yield* Effect.tryPromise({
      try: () =>
        writeFile(lockFile, JSON.stringify(self) + "\n", { flag: "wx" }).then(() => true, (error: unknown) =>
          errorCode(error) === "EEXIST" ? false : Promise.reject(error)),
      catch: unusable(`cannot write ${lockFile}`)
    })
    if (!written) return yield* new LockHeld({ lockFile, pid: parseOwner((yield* readLock) ?? "")?.pid })
    return lockFile
  })

const lockLayer = (options: LockOptions): Layer.Layer<never, DataDirUnusable | LockHeld, AppConfig> =>
  Layer.scopedDiscard(
    Effect.acquireRelease(acquireDataDirLock(options), (lockFile) =>
      Effect.tryPromise(() => rm(lockFile, { force: true })).pipe(Effect.ignore))
  )

/** The service's hold on DATA_DIR, created if needed, for the life of the layer. */
export const DataDirLockLive = lockLayer({ create: true })

/** `replay`'s hold on a DATA_DIR that must already exist. */
export const ExistingDataDirLockLive = lockLayer({ create: false })
