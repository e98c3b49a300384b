/**
 * `DATA_DIR/s3-ingest.lock`: the service and `replay` each hold it, so they never work on one
 * directory at once (DESIGN §6). The file records the owner's PID and process start time; a lock
 * whose PID is gone, or now belongs to another process (a restarted container reuses PIDs), is
 * stale and taken over.
 */
import { readFileSync } from "node:fs"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
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

export const acquireDataDirLock = Effect.gen(function*() {
  const { dataDir } = yield* AppConfig
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const lockFile = path.join(dataDir, "s3-ingest.lock")
  const self: Owner = { pid: process.pid, startTime: processStartTime(process.pid) }
  const held = (message: string) => new LockHeld({ message: `${lockFile}: ${message}` })

  yield* fs.makeDirectory(dataDir, { recursive: true }).pipe(Effect.mapError((e) => held(e.message)))
  const existing = yield* fs.readFileString(lockFile).pipe(Effect.option)
  if (existing._tag === "Some") {
    const owner = parseOwner(existing.value)
    if (owner !== undefined && owner.pid !== process.pid && isAlive(owner)) {
      return yield* held(`held by process ${owner.pid}`)
    }
    yield* Effect.logWarning("taking over a stale lock").pipe(Effect.annotateLogs({ lockFile }))
    yield* fs.remove(lockFile, { force: true }).pipe(Effect.mapError((e) => held(e.message)))
  }
  // `wx`: exclusive create, so two starters racing for a stale lock cannot both win.
  yield* fs.writeFileString(lockFile, JSON.stringify(self) + "\n", { flag: "wx" }).pipe(
    Effect.mapError((e) => held(e._tag === "SystemError" && e.reason === "AlreadyExists" ? "held by another process" : e.message))
  )
  return lockFile
})

/** Holds the lock for the life of the layer; released (removed) when it closes. */
export const DataDirLockLive: Layer.Layer<never, LockHeld, AppConfig | FileSystem.FileSystem | Path.Path> = Layer
  .scopedDiscard(
    Effect.acquireRelease(acquireDataDirLock, (lockFile) =>
      Effect.flatMap(FileSystem.FileSystem, (fs) => fs.remove(lockFile, { force: true })).pipe(Effect.ignore))
  )
