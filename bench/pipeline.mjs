#!/usr/bin/env node
// `npm run bench:pipeline`: the CPU the queue-and-worker pipeline costs on its own, without HTTP.
// The JobQueue layer (dist/services/JobQueue.js) over a store whose put writes nothing and
// answers on the next turn of the event loop, as a real store answers asynchronously, or with
// STORE=local over the embedded store writing durably under a temp dir (TMPDIR: put it on a tmpfs
// to leave the disk out); collections of PAYLOADS-payload bodies (default 10) of about 1 KiB each
// are offered at RATE jobs a second (default 5,000, about what the intake suite's 10-payload runs
// admit), 64 per timer turn like the kit's 64 connections. The same feed without the queue is
// measured first and subtracted. Pin it to one core (`taskset -c 0 npm run bench:pipeline`) to
// compare with the intake suite.
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as RuntimeFlags from "effect/RuntimeFlags"
import * as Scope from "effect/Scope"
import { parseCollection } from "../dist/domain/Collection.js"
import { makeArrival } from "../dist/domain/Slabs.js"
import { LocalObjectStoreLive } from "../dist/layers/LocalObjectStore.js"
import { testLayer } from "../dist/services/AppConfig.js"
import { JobQueue } from "../dist/services/JobQueue.js"
import { Metrics } from "../dist/services/Metrics.js"
import { DeadLetter, ObjectStore } from "../dist/services/ObjectStore.js"
import { Shutdown } from "../dist/services/Shutdown.js"
import { body as collection } from "./bodies.mjs"

const RATE = Number(process.env.RATE ?? 5000)
const PAYLOADS = Number(process.env.PAYLOADS ?? 10)
const STORE = process.env.STORE ?? "none"
if (STORE !== "none" && STORE !== "local") throw new Error("STORE is none or local")
const WARMUP_MS = 2000
const WINDOW_MS = 5000

const body = collection(PAYLOADS)
const parsed = parseCollection(body, 64)
if (parsed._tag !== "Collection") throw new Error("the bench body does not validate")

/** Makes RATE arrivals a second (each from its own copy of the body, as the edge gets one per request) and hands them to `take`. */
const feed = (take) => {
  let made = 0
  let stopped = false
  const started = Date.now()
  const turn = () => {
    if (stopped) return
    const due = Math.floor(((Date.now() - started) * RATE) / 1000)
    for (let i = 0; i < 64 && made < due; i++, made++) take(makeArrival(Buffer.from(body), parsed.collection, Date.now()))
    setTimeout(turn, 1)
  }
  turn()
  return () => {
    stopped = true
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** CPU of this process over the window after the warm-up, as a share of one core. */
const cpuShare = async () => {
  await sleep(WARMUP_MS)
  const before = process.cpuUsage()
  await sleep(WINDOW_MS)
  const used = process.cpuUsage(before)
  return (used.user + used.system) / 1000 / WINDOW_MS
}

const stopFeedOnly = feed(() => {})
const feedOnly = await cpuShare()
stopFeedOnly()

const dataDir = mkdtempSync(join(tmpdir(), "s3-ingest-pipeline-"))
process.on("exit", () => rmSync(dataDir, { recursive: true, force: true }))
const config = testLayer({ maxQueue: 100_000, dataDir })
const store = STORE === "local"
  ? LocalObjectStoreLive.pipe(Layer.provide(config), Layer.orDie)
  : Layer.succeed(
    ObjectStore,
    ObjectStore.of({
      put: () =>
        Effect.async((resume) => {
          setImmediate(() => resume(Effect.void))
        }),
      check: Effect.void
    })
  )
const layer = JobQueue.Default.pipe(
  Layer.provideMerge(
    Layer.mergeAll(
      Metrics.Default,
      store,
      Layer.succeed(DeadLetter, DeadLetter.of({ write: () => Effect.void })),
      config,
      Shutdown.layer(Effect.runSync(Deferred.make())).pipe(Layer.provide(config))
    )
  ),
  // As the service runs it (layers/App.ts).
  Layer.provide(RuntimeFlags.disableRuntimeMetrics)
)
const scope = Effect.runSync(Scope.make())
const queue = Context.get(await Effect.runPromise(Layer.buildWithScope(layer, scope)), JobQueue)
const stopFeed = feed((job) => queue.offer(job))
const storedBefore = queue.stats().stored
const withPipeline = await cpuShare()
const stored = queue.stats().stored - storedBefore
stopFeed()

const batchesPerSecond = stored / 1000 / ((WARMUP_MS + WINDOW_MS) / 1000)
const pipeline = withPipeline - feedOnly
process.stdout.write(
  `${RATE} jobs/s of ${PAYLOADS} payloads, store ${STORE}: feeding alone ${(feedOnly * 100).toFixed(1)} % of a core, ` +
    `with the pipeline ${(withPipeline * 100).toFixed(1)} %; the pipeline ${(pipeline * 100).toFixed(1)} %, ` +
    `${((pipeline * 1000) / batchesPerSecond).toFixed(2)} ms per 1,000-payload batch\n`
)
process.exit(0)
