/**
 * Composition only. The listener is bound first, so a taken port stops the start before
 * DATA_DIR is touched. `IngestServer → JobQueue → stores` are chained with `Layer.provide`, so
 * they are built store first and released server first: the edge stops intake and conducts the
 * drain, then the queue interrupts its workers and dead-letters the rest, then the stores close.
 */
import type * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as RuntimeFlags from "effect/RuntimeFlags"
import { AppConfig, type Settings } from "../services/AppConfig.js"
import { Ingest } from "../services/intake/Ingest.js"
import { JobQueue } from "../services/JobQueue.js"
import { JournalLive } from "../services/journal/Journal.js"
import { Metrics } from "../services/Metrics.js"
import { Shutdown, type ShutdownSummary } from "../services/Shutdown.js"
import { DataDirLockLive, ExistingDataDirLockLive } from "./DataDir.js"
import { FaultyObjectStore } from "./FaultyObjectStore.js"
import { HttpListenerLive } from "./HttpListener.js"
import { NodeJournalFilesLive } from "./NodeJournalFiles.js"
import { IngestServerLive } from "./IngestServer.js"
import { DeadLetterDirLive, LocalObjectStoreLive } from "./LocalObjectStore.js"
import { S3ObjectStoreLive } from "./S3ObjectStore.js"
import { YoungGenerationCapLive } from "./YoungGeneration.js"

const ObjectStoreLive = Layer.unwrapEffect(
  Effect.map(AppConfig, (settings) => {
    const store = settings.storage === "s3" ? S3ObjectStoreLive : LocalObjectStoreLive
    return settings.storeFaults === undefined ? store : FaultyObjectStore(settings.storeFaults).pipe(Layer.provide(store))
  })
)

const StoresLive = Layer.merge(ObjectStoreLive, DeadLetterDirLive)

// The lock is taken before the stores and the journal touch DATA_DIR (the local store clears its
// temporary files, the journal is read back) and released after they closed.
const QueueLive = JobQueue.Default.pipe(
  Layer.provide(Layer.merge(StoresLive, JournalLive.pipe(Layer.provide(NodeJournalFilesLive)))),
  Layer.provide(DataDirLockLive)
)

const EdgeLive = IngestServerLive.pipe(Layer.provide(Ingest.Default))

/** The service; `summary` receives its shutdown summary, from which the exit code follows. */
export const ServiceLive = (settings: Settings, summary: Deferred.Deferred<ShutdownSummary>) =>
  Layer.merge(YoungGenerationCapLive, EdgeLive).pipe(
    Layer.provide(QueueLive),
    Layer.provide(HttpListenerLive),
    Layer.provide(Layer.merge(Metrics.Default, Shutdown.layer(summary))),
    Layer.provide(Layer.succeed(AppConfig, settings)),
    // Effect's own fiber metrics cost 20–30 % on fork-heavy code and nothing here reads them.
    Layer.provide(RuntimeFlags.disableRuntimeMetrics)
  )

/**
 * `replay`: the configured store (with its faults, if any) and the lock on an existing DATA_DIR,
 * nothing else. The platform FileSystem is loaded here, on demand: the service's start-up never
 * pays for it.
 */
export const runReplay = (settings: Settings) =>
  Effect.gen(function*() {
    const [replay, nodeFileSystem, nodePath] = yield* Effect.promise(() =>
      Promise.all([
        import("../services/Replay.js"),
        import("@effect/platform-node/NodeFileSystem"),
        import("@effect/platform-node/NodePath")
      ])
    )
    return yield* replay.replayDeadLetters.pipe(
      Effect.provide(
        Layer.mergeAll(ObjectStoreLive, Metrics.Default, nodeFileSystem.layer, nodePath.layer).pipe(
          Layer.provide(ExistingDataDirLockLive),
          Layer.provideMerge(Layer.succeed(AppConfig, settings))
        )
      )
    )
  })
