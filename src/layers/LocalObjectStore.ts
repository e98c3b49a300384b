/**
 * The embedded default store, object `key` at `DATA_DIR/objects/{key}`, and the dead-letter
 * directory, `DATA_DIR/dead-letter/{file name of the key}`. Both write durably (LocalFiles).
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { keyFileName } from "../domain/Keys.js"
import { AppConfig } from "../services/AppConfig.js"
import { DeadLetter, ObjectStore, type StoreError } from "../services/ObjectStore.js"
import { makeDurableWriter } from "./LocalFiles.js"

const writerUnder = (directory: string) =>
  Effect.gen(function*() {
    const { dataDir } = yield* AppConfig
    const path = yield* Path.Path
    return yield* makeDurableWriter(path.join(dataDir, directory), path.join(dataDir, ".tmp", directory))
  })

export const LocalObjectStoreLive: Layer.Layer<
  ObjectStore,
  StoreError,
  AppConfig | FileSystem.FileSystem | Path.Path
> = Layer.effect(
  ObjectStore,
  Effect.map(writerUnder("objects"), (writer) => ObjectStore.of({ put: writer.write }))
)

export const DeadLetterDirLive: Layer.Layer<
  DeadLetter,
  StoreError,
  AppConfig | FileSystem.FileSystem | Path.Path
> = Layer.effect(
  DeadLetter,
  Effect.map(writerUnder("dead-letter"), (writer) =>
    DeadLetter.of({ write: (key, body) => writer.write(keyFileName(key), body) }))
)
