/**
 * The embedded default store, object `key` at `DATA_DIR/objects/{key}`, and the dead-letter
 * directory, `DATA_DIR/dead-letter/{file name of the key}`. Both write durably (LocalFiles).
 *
 * Directories are prepared when the layer is built; the platform FileSystem behind the writes is
 * loaded on the first write, so start-up (and the first 202) does not wait for it.
 */
import { mkdir, rm } from "node:fs/promises"
import { join } from "node:path"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { keyFileName } from "../domain/Keys.js"
import { AppConfig } from "../services/AppConfig.js"
import { DeadLetter, ObjectStore, StoreError } from "../services/ObjectStore.js"

/**
 * Creates `root` and clears `tempDir` of files left by an earlier run (a crash mid-write), with
 * node:fs: it runs at every start, before the first request, where @effect/platform's error types
 * would cost the start-up a load of effect/Schema. The writes themselves use the platform FileSystem.
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

const lazyWriter = (directory: string) =>
  Effect.gen(function*() {
    const { dataDir } = yield* AppConfig
    const scope = yield* Effect.scope
    const root = join(dataDir, directory)
    const tempDir = join(dataDir, ".tmp", directory)
    yield* prepareDirectories(root, tempDir)
    const writer = yield* Effect.cached(
      Effect.gen(function*() {
        const [files, nodeFileSystem, nodePath] = yield* Effect.promise(() =>
          Promise.all([
            import("./LocalFiles.js"),
            import("@effect/platform-node/NodeFileSystem"),
            import("@effect/platform-node/NodePath")
          ])
        )
        return yield* files.makeDurableWriter(root, tempDir, scope).pipe(
          Effect.provide(Layer.merge(nodeFileSystem.layer, nodePath.layer))
        )
      })
    )
    return (relative: string, body: Uint8Array): Effect.Effect<void, StoreError> =>
      Effect.flatMap(writer, (w) => w.write(relative, body))
  })

export const LocalObjectStoreLive: Layer.Layer<ObjectStore, StoreError, AppConfig> = Layer.scoped(
  ObjectStore,
  Effect.map(lazyWriter("objects"), (write) => ObjectStore.of({ put: write }))
)

export const DeadLetterDirLive: Layer.Layer<DeadLetter, StoreError, AppConfig> = Layer.scoped(
  DeadLetter,
  Effect.map(lazyWriter("dead-letter"), (write) => DeadLetter.of({ write: (key, body) => write(keyFileName(key), body) }))
)
