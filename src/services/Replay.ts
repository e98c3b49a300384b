/**
 * `replay`: re-uploads every dead-letter file, its bytes unchanged, under the key it was meant for
 * (rebuilt from its path), through the same upload policy as the service (deadline, retries, breaker), and
 * deletes a file only after the store confirmed it. Re-running it is safe: a file already
 * replayed is gone, and one replayed but not yet deleted is written again under the same key
 * with the same bytes.
 *
 * A one-shot command must end: it does not wait out an outage as the service does. The first
 * file the store refuses (retries exhausted, a permanent error, or the breaker open) stops the
 * run; the files not tried are left in place, each named in the log, and the summary says how
 * many were stored, failed and left. A signal stops it the same way.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Effect from "effect/Effect"
import * as Ref from "effect/Ref"
import { DataDirUnusable } from "../domain/DataDirErrors.js"
import { inspectDeadLetter } from "../domain/DeadLetterFile.js"
import { keyOfDeadLetter } from "../domain/Keys.js"
import { AppConfig } from "./AppConfig.js"
import { Metrics } from "./Metrics.js"
import { ObjectStore, storeErrorFields } from "./ObjectStore.js"
import { makeUploader } from "./delivery/Uploader.js"

export interface ReplaySummary {
  /** Dead-letter files to replay (valid batches). */
  readonly files: number
  readonly stored: number
  readonly failed: number
  /** Not tried: the run stopped first. */
  readonly left: number
  /** Left alone: not a dead-letter file name, or not NDJSON. */
  readonly skipped: number
  /** Payloads in the stored files. */
  readonly payloads: number
  readonly interrupted: boolean
}

/** Replay's own exit code: 0 when every file it could replay was stored. */
export const replayExitCode = (summary: ReplaySummary): 0 | 1 =>
  summary.failed > 0 || summary.left > 0 || summary.interrupted ? 1 : 0

interface DeadLetterFile {
  /** The path under `dead-letter/`. */
  readonly name: string
  readonly path: string
  readonly key: string
  readonly payloads: number
}

interface Progress {
  readonly stored: number
  readonly failed: number
  readonly payloads: number
  /** Files tried so far, in order. */
  readonly tried: number
}

/**
 * Removes the directories below `root` that the replayed files left empty, deepest first: the
 * layout mirrors keys, so a replayed hour would otherwise leave its tree behind. Best effort.
 */
const pruneEmptyDirectories = (
  fs: FileSystem.FileSystem,
  path: Path.Path,
  root: string,
  files: ReadonlyArray<string>
) =>
  Effect.gen(function*() {
    const directories = new Set<string>()
    for (const file of files) {
      for (let dir = path.dirname(file); dir.startsWith(root + path.sep); dir = path.dirname(dir)) directories.add(dir)
    }
    const deepestFirst = [...directories].sort((a, b) => b.length - a.length)
    for (const dir of deepestFirst) {
      const entries = yield* fs.readDirectory(dir).pipe(Effect.orElseSucceed(() => ["?"]))
      // Checked empty just now, and the lock keeps any writer out.
      if (entries.length === 0) yield* fs.remove(dir, { recursive: true }).pipe(Effect.ignore)
    }
  })

export const replayDeadLetters = Effect.scoped(Effect.gen(function*() {
  const config = yield* AppConfig
  const store = yield* ObjectStore
  const metrics = yield* Metrics
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const { upload } = yield* makeUploader(store, metrics, config, { whileOpen: "fail" })
  const directory = path.join(config.dataDir, "dead-letter")

  const unreadable = (error: { readonly message: string }) =>
    new DataDirUnusable({ problem: `cannot read ${directory} (${error.message})`, cause: error })
  const entries = (yield* fs.readDirectory(directory, { recursive: true }).pipe(
    Effect.catchIf((error) => error._tag === "SystemError" && error.reason === "NotFound", () => Effect.succeed([])),
    Effect.mapError(unreadable)
  )).sort()

  // First pass: which files are batches replay can take, so progress counts only those.
  const files: Array<DeadLetterFile> = []
  let skipped = 0
  for (const entry of entries) {
    const name = entry.split(path.sep).join("/")
    const file = path.join(directory, entry)
    if ((yield* fs.stat(file).pipe(Effect.mapError(unreadable))).type !== "File") continue
    const key = keyOfDeadLetter(config.s3Prefix, name)
    const found = key === undefined
      ? { problem: "not a dead-letter file name" }
      : yield* fs.readFile(file).pipe(
        Effect.map((bytes) => inspectDeadLetter(name, bytes)),
        Effect.catchAll((error) => Effect.succeed({ problem: error.message }))
      )
    if (key === undefined || "problem" in found) {
      skipped++
      yield* Effect.logWarning("skipped, left alone").pipe(
        Effect.annotateLogs({ file: name, problem: "problem" in found ? found.problem : "" })
      )
      continue
    }
    files.push({ name, path: file, key, payloads: found.payloads })
  }
  yield* Effect.logInfo("replay started").pipe(Effect.annotateLogs({ files: files.length, skipped }))

  const progress = yield* Ref.make<Progress>({ stored: 0, failed: 0, payloads: 0, tried: 0 })

  const finish = (interrupted: boolean) =>
    Effect.gen(function*() {
      const done = yield* Ref.get(progress)
      const left = files.slice(done.tried)
      for (const file of left) yield* Effect.logWarning("file left").pipe(Effect.annotateLogs({ file: file.name, key: file.key }))
      const summary: ReplaySummary = {
        files: files.length,
        stored: done.stored,
        failed: done.failed,
        left: left.length,
        skipped,
        payloads: done.payloads,
        interrupted
      }
      const log = replayExitCode(summary) === 0 ? Effect.logInfo : Effect.logWarning
      yield* log("replay finished").pipe(Effect.annotateLogs({ ...summary }))
      return summary
    })

  /** Replays one file; false when the store refused it and the run must stop. */
  const replayFile = (file: DeadLetterFile, index: number) =>
    Effect.gen(function*() {
      const counter = `${index + 1}/${files.length}`
      const bytes = yield* fs.readFile(file.path).pipe(Effect.either)
      if (bytes._tag === "Left") {
        yield* Ref.update(progress, (p) => ({ ...p, failed: p.failed + 1, tried: p.tried + 1 }))
        yield* Effect.logError("replay failed; file kept").pipe(
          Effect.annotateLogs({ file: file.name, key: file.key, reason: bytes.left.message, progress: counter })
        )
        return true
      }
      const uploaded = yield* Effect.either(upload(file.key, bytes.right))
      if (uploaded._tag === "Left") {
        yield* Ref.update(progress, (p) => ({ ...p, failed: p.failed + 1, tried: p.tried + 1 }))
        yield* Effect.logError("replay failed; file kept").pipe(
          Effect.annotateLogs({ file: file.name, key: file.key, ...storeErrorFields(uploaded.left), progress: counter })
        )
        return false
      }
      const payloads = file.payloads
      yield* Ref.update(progress, (p) => ({
        ...p,
        stored: p.stored + 1,
        payloads: p.payloads + payloads,
        tried: p.tried + 1
      }))
      // Stored either way; a file that stays is written again, identically, by the next run.
      yield* fs.remove(file.path).pipe(
        Effect.catchAll((error) =>
          Effect.logWarning("stored, but the file could not be removed").pipe(
            Effect.annotateLogs({ file: file.name, reason: error.message })
          )
        )
      )
      yield* Effect.logInfo("replayed").pipe(Effect.annotateLogs({ key: file.key, payloads, progress: counter }))
      return true
    })

  const run = Effect.gen(function*() {
    for (const [index, file] of files.entries()) {
      if (!(yield* replayFile(file, index))) return
    }
  })

  yield* run.pipe(Effect.onInterrupt(() => finish(true)))
  yield* pruneEmptyDirectories(fs, path, directory, files.map((file) => file.path))
  return yield* finish(false)
}))
