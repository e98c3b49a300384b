/**
 * The embedded default store, object `key` at `DATA_DIR/objects/{key}`, and the dead-letter
 * directory, `DATA_DIR/dead-letter/{file name of the key}`. Both write durably (LocalFiles).
 *
 * Directories are prepared when the layer is built, with node:fs only: nothing on the way to the
 * first 202 loads @effect/platform's FileSystem (whose error types load effect/Schema).
 */
import { mkdir, rm } from "node:fs/promises"
import { join } from "node:path"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { keyFileName } from "../domain/Keys.js"
import { AppConfig } from "../services/AppConfig.js"
import { DeadLetter, ObjectStore, StoreError } from "../services/ObjectStore.js"
import { makeDurableWriter } from "./LocalFiles.js"

/**
 * Creates `root` and clears `tempDir` of files left by an earlier run (a crash mid-write).
 */
export const prepareDirectories = (root: string, tempDir: string): Effect.Effect<void, StoreError> =>
  Effect.tryPromise({
    try: async () => {
      await mkdir(root, { recursive: true })
      await rm(tempDir, { recursive: true, force: true })
      await mkdir(tempDir, { recursive: true })
    },
    catch: (error) => new StoreError({ retryable: false, reason: `cannot prepare ${root}: ${String(error)}` })
  })

const durableWriter = (directory: string) =>
  Effect.gen(function*() {
    const { dataDir } = yield* AppConfig
    const root = join(dataDir, directory)
    const tempDir = join(dataDir, ".tmp", directory)
    yield* prepareDirectories(root, tempDir)
    return yield* makeDurableWriter(root, tempDir, yield* Effect.scope)
  })

export const LocalObjectStoreLive: Layer.Layer<ObjectStore, StoreError, AppConfig> = Layer.scoped(
  ObjectStore,
  Effect.map(durableWriter("objects"), (writer) => ObjectStore.of({ put: writer.write }))
)

export const DeadLetterDirLive: Layer.Layer<DeadLetter, StoreError, AppConfig> = Layer.scoped(
  DeadLetter,
  Effect.map(
    durableWriter("dead-letter"),
    (writer) => DeadLetter.of({ write: (key, body) => writer.write(keyFileName(key), body) })
  )
)
