/**
 * Builds a JobQueue over test layers in a scope the test closes itself, so a drain that waits on
 * the TestClock can be driven forward instead of hanging the test's own scope.
 */
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import { parseCollection } from "../../src/domain/Collection.js"
import { type Arrival, makeArrival } from "../../src/domain/Slabs.js"
import { type Settings, testLayer } from "../../src/services/AppConfig.js"
import { type Admission, JobQueue } from "../../src/services/JobQueue.js"
import { Journal, JournalLive } from "../../src/services/journal/Journal.js"
import { Metrics } from "../../src/services/Metrics.js"
import { exitCodeOf, Shutdown, type ShutdownSummary } from "../../src/services/Shutdown.js"
import type { DeadLetter, ObjectStore } from "../../src/services/ObjectStore.js"
import { makeMemoryFiles, type MemoryFiles } from "./journalFiles.js"
import { makeMemoryDeadLetter, makeMemoryStore } from "./stores.js"

/**
 * Without `files`, the queue runs with `DURABILITY=memory` (unless `settings` say otherwise) over a
 * journal of its own in memory; with `files`, over that journal, so that a test can build a queue
 * again over what an earlier one left.
 */
export const buildQueue = (
  settings: Partial<Settings>,
  store: Layer.Layer<ObjectStore>,
  deadLetter: Layer.Layer<DeadLetter>,
  files: MemoryFiles = makeMemoryFiles()
) =>
  Effect.gen(function*() {
    const summary = yield* Deferred.make<ShutdownSummary>()
    const scope = yield* Scope.make()
    // Plain objects unless a test asks for gzip: the memory store keeps them as text.
    const config = testLayer({ objectCompression: "none", durability: "memory", dataDir: "/data", ...settings })
    const base = Layer.mergeAll(Metrics.Default, store, deadLetter, config, Shutdown.layer(summary).pipe(Layer.provide(config)))
    const layer = JobQueue.Default.pipe(
      Layer.provideMerge(JournalLive.pipe(Layer.provide(files.layer))),
      Layer.provideMerge(base)
    )
    const context = yield* Layer.buildWithScope(layer, scope)
    return {
      queue: Context.get(context, JobQueue),
      metrics: Context.get(context, Metrics),
      journal: Context.get(context, Journal),
      /** The summary of the shutdown (waits for it). */
      summary: Deferred.await(summary),
      shutdown: Context.get(context, Shutdown),
      /** The exit code the shutdown summary decides (waits for the shutdown). */
      exitCode: Effect.map(Deferred.await(summary), exitCodeOf),
      scope,
      /** Closes the scope (the drain and shutdown) while moving the clock by `advance`. */
      close: (advance: number) =>
        Effect.gen(function*() {
          const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
          yield* TestClock.adjust(advance)
          yield* Fiber.join(closing)
        })
    }
  })

/** `buildQueue` over an in-memory store and dead-letter directory, returned beside it. */
export const memoryQueue = (settings: Partial<Settings>) =>
  Effect.gen(function*() {
    const store = yield* makeMemoryStore
    const dead = yield* makeMemoryDeadLetter
    return { ...(yield* buildQueue(settings, store.layer, dead.layer)), store, dead }
  })

/** Admits `arrival` and returns the answer, which must come at once (no journal in the way). */
export const offerNow = (queue: JobQueue, arrival: Arrival): Admission => {
  const admission = queue.offer(arrival)
  if (typeof admission !== "string") throw new Error("the answer waits for the journal")
  return admission
}

/** Admits `arrival` and waits for the answer. */
export const offer = (queue: JobQueue, arrival: Arrival) =>
  Effect.async<Admission>((resume) => {
    const admission = queue.offer(arrival)
    if (typeof admission === "string") resume(Effect.succeed(admission))
    else admission.onAnswer = (answer) => resume(Effect.succeed(answer))
  })

/** Waits (without moving the clock) until at least `count` sleeps are registered on the TestClock. */
export const awaitSleepers = (count: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < 10_000; i++) {
      if (Chunk.size(yield* TestClock.sleeps()) >= count) return
      yield* Effect.yieldNow()
    }
    return yield* Effect.dieMessage(`expected ${count} pending sleeps`)
  })

/** A collection body at the queue's door, as the edge hands it over. */
export const arrivalOf = (text: string, acceptedAt = 0): Arrival => {
  const body = Buffer.from(text)
  const parsed = parseCollection(body, 64)
  if (parsed._tag === "Invalid") throw new Error(parsed.error.message)
  return makeArrival(body, parsed.collection, acceptedAt)
}

/**
 * A collection of `count` payloads `{"id":<from>}` … `{"id":<from + count - 1>}` at the queue's
 * door, as the edge hands it over: validated, its payloads byte ranges of the body.
 */
export const job = (count: number, from = 0, acceptedAt = 0): Arrival => {
  const data = Array.from({ length: count }, (_, i) => ({ id: from + i }))
  const body = Buffer.from(JSON.stringify({ version: "1", token: "t", data }))
  const parsed = parseCollection(body, 64)
  if (parsed._tag === "Invalid") throw new Error(parsed.error.message)
  return makeArrival(body, parsed.collection, acceptedAt)
}

export const ids = (ndjson: string): Array<number> =>
  ndjson.split("\n").filter((l) => l !== "").map((l) => (JSON.parse(l) as { id: number }).id)

/** Reads one sample of a prom-client metric from the registry. */
export const sample = (metrics: Metrics, name: string, labels: Record<string, string> = {}) =>
  Effect.promise(async () => {
    const metric = metrics.registry.getSingleMetric(name)
    if (metric === undefined) throw new Error(`no metric ${name}`)
    const { values } = await metric.get()
    const found = values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))
    return found?.value ?? 0
  })
