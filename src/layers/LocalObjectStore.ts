/**
 * The embedded default store, object `key` at `DATA_DIR/objects/{key}`, and the dead-letter
 * directory, `DATA_DIR/dead-letter/{key without its prefix}`: directories that mirror the key,
 * so replay rebuilds it whole. Both write durably (LocalFiles).
 *
 * Directories are prepared when the layer is built, with node:fs only: nothing on the way to the
 * first 202 loads @effect/platform's FileSystem (whose error types load effect/Schema).
 */
import { constants } from "node:fs"
import { access, rm } from "node:fs/promises"
import { join } from "node:path"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { keyBelowPrefix } from "../domain/Keys.js"
import { AppConfig } from "../services/AppConfig.js"
import { DeadLetter, ObjectStore, type StoreError, storeError } from "../services/ObjectStore.js"
import { DataDirUnusable } from "../domain/DataDirErrors.js"
import { ensureDirectory } from "./DataDir.js"
import { makeDurableWriter } from "./LocalFiles.js"

/**
 * Creates `root` and clears `tempDir` of files left by an earlier run (a crash mid-write).
 */
export const prepareDirectories = (root: string, tempDir: string): Effect.Effect<void, DataDirUnusable> =>
  Effect.gen(function*() {
    yield* ensureDirectory(root)
    yield* Effect.tryPromise({
      try: () => rm(tempDir, { recursive: true, force: true }),
      catch: (cause) => new DataDirUnusable({ problem: `cannot clear ${tempDir} (${String(cause)})`, cause })
    })
    yield* ensureDirectory(tempDir)
  })

const durableWriter = (directory: string) =>
  Effect.gen(function*() {
    const { dataDir } = yield* AppConfig
    const root = join(dataDir, directory)
    const tempDir = join(dataDir, ".tmp", directory)
    yield* prepareDirectories(root, tempDir)
    const writer = yield* makeDurableWriter(root, tempDir, yield* Effect.scope).pipe(
      Effect.mapError((error) => new DataDirUnusable({ problem: error.reason, cause: error }))
    )
    return { root, writer }
  })

/** The directory is there and writable: what the breaker's probe asks of the local store. */
const writable = (root: string): Effect.Effect<void, StoreError> =>
  Effect.tryPromise({
    try: () => access(root, constants.W_OK),
    catch: (cause) => {
      const code = (cause as NodeJS.ErrnoException).code
      return storeError({
        retryable: code !== "EACCES" && code !== "EROFS",
        reason: `${root} is not writable: ${String(cause)}`,
        code,
        cause
      })
    }
  })

export const LocalObjectStoreLive: Layer.Layer<ObjectStore, DataDirUnusable, AppConfig> = Layer.scoped(
  ObjectStore,
  Effect.map(durableWriter("objects"), ({ root, writer }) => ObjectStore.of({ put: writer.write, check: writable(root) }))
)

export const DeadLetterDirLive: Layer.Layer<DeadLetter, DataDirUnusable, AppConfig> = Layer.scoped(
  DeadLetter,
  Effect.gen(function*() {
    const { s3Prefix } = yield* AppConfig
    const { root, writer } = yield* durableWriter("dead-letter")
    return DeadLetter.of({
      write: (key, body) => writer.write(keyBelowPrefix(s3Prefix, key), body),
      exists: (key) =>
        Effect.promise(() =>
          access(join(root, keyBelowPrefix(s3Prefix, key))).then(() => true, () => false)
        )
    })
  })
)
