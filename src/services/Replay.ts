/**
 * `replay`: re-uploads every dead-letter file under the key it was meant for (rebuilt from its
 * file name), through the same Uploader as the service (deadline, retries, breaker), and deletes
 * a file only after the store confirmed it. Re-running it is safe: a file already replayed is
 * gone, and one replayed but not yet deleted is written again under the same key with the same
 * bytes.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Effect from "effect/Effect"
import { keyFromFileName } from "../domain/Keys.js"
import { AppConfig } from "./AppConfig.js"
import { Metrics } from "./Metrics.js"
import { ObjectStore } from "./ObjectStore.js"
import { makeUploader } from "./Uploader.js"

export interface ReplaySummary {
  readonly files: number
  readonly replayed: number
  readonly failed: number
  readonly skipped: number
  readonly payloads: number
}

const countLines = (bytes: Uint8Array): number => {
  let n = 0
  for (let i = 0; i < bytes.length; i++) if (bytes[i] === 0x0a) n++
  return n
}

export const replayDeadLetters = Effect.scoped(Effect.gen(function*() {
  const config = yield* AppConfig
  const store = yield* ObjectStore
  const metrics = yield* Metrics
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const { upload } = yield* makeUploader(store, metrics, config)
  const directory = path.join(config.dataDir, "dead-letter")

  const names = (yield* fs.readDirectory(directory).pipe(Effect.orElseSucceed(() => []))).sort()
  let replayed = 0
  let failed = 0
  let skipped = 0
  let payloads = 0
  for (const name of names) {
    const key = keyFromFileName(config.s3Prefix, name)
    if (key === undefined) {
      skipped++
      yield* Effect.logWarning("not a dead-letter file, left alone").pipe(Effect.annotateLogs({ file: name }))
      continue
    }
    const file = path.join(directory, name)
    const outcome = yield* fs.readFile(file).pipe(
      Effect.flatMap((bytes) =>
        upload(key, bytes).pipe(
          Effect.zipRight(fs.remove(file)),
          Effect.as(countLines(bytes))
        )
      ),
      Effect.either
    )
    if (outcome._tag === "Right") {
      replayed++
      payloads += outcome.right
      yield* Effect.logInfo("replayed").pipe(
        Effect.annotateLogs({ key, payloads: outcome.right, progress: `${replayed + failed + skipped}/${names.length}` })
      )
    } else {
      failed++
      yield* Effect.logError("replay failed; file kept").pipe(
        Effect.annotateLogs({ key, reason: String(outcome.left.message) })
      )
    }
  }
  const summary: ReplaySummary = { files: names.length, replayed, failed, skipped, payloads }
  yield* Effect.logInfo("replay finished").pipe(Effect.annotateLogs({ ...summary }))
  return summary
}))
