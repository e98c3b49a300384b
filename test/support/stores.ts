/**
 * Test layers for the store side of the JobQueue: a memory store, a hanging store that shows
 * whether its AbortSignal fired, a scripted store, and memory / failing dead-letter sinks.
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import { DeadLetter, ObjectStore, type StoreError, storeError } from "../../src/services/ObjectStore.js"

const text = (body: Uint8Array) => Buffer.from(body).toString("utf8")

/**
 * Stores objects in a Map, as text and as bytes; every put is also offered to `puts` so tests can
 * wait for it.
 */
export const makeMemoryStore = Effect.gen(function*() {
  const objects = new Map<string, string>()
  const bytes = new Map<string, Buffer>()
  const puts = yield* Queue.unbounded<string>()
  const layer = Layer.succeed(
    ObjectStore,
    ObjectStore.of({
      put: (key, body) =>
        Effect.sync(() => {
          objects.set(key, text(body))
          bytes.set(key, Buffer.from(body))
        }).pipe(Effect.zipRight(Queue.offer(puts, key)), Effect.asVoid),
      check: Effect.void
    })
  )
  return { objects, bytes, puts, layer } as const
})

/**
 * Accepts every put and never answers, like a store whose socket stalls. The put is a Promise
 * that only settles when its AbortSignal fires, so `aborted` proves the signal reached it.
 */
export const makeHangingStore = Effect.gen(function*() {
  const started = yield* Queue.unbounded<string>()
  const aborted = yield* Deferred.make<string>()
  const layer = Layer.succeed(
    ObjectStore,
    ObjectStore.of({
      put: (key) =>
        Queue.offer(started, key).pipe(
          Effect.zipRight(
            Effect.tryPromise({
              try: (signal) =>
                new Promise<void>((_, reject) => {
                  signal.addEventListener("abort", () => {
                    Deferred.unsafeDone(aborted, Exit.succeed(key))
                    reject(new Error("aborted"))
                  })
                }),
              catch: () => storeError({ retryable: true, reason: "aborted" })
            })
          )
        ),
      check: Effect.never
    })
  )
  return { started, aborted, layer } as const
})

export type Step = "ok" | StoreError | "die" | "hang"

const perform = (step: Step, ok: Effect.Effect<void>): Effect.Effect<void, StoreError> =>
  step === "die"
    ? Effect.die(new Error("store defect"))
    : step === "hang"
    ? Effect.never
    : step === "ok"
    ? ok
    : Effect.fail(step)

/**
 * Answers each put with the next scripted step, and each store check (the breaker's probe) with
 * the next of `checkSteps` (in both, the last one repeats); records the virtual time of every
 * attempt and check.
 */
export const makeScriptedStore = (steps: ReadonlyArray<Step>, checkSteps: ReadonlyArray<Step> = ["ok"]) =>
  Effect.gen(function*() {
    const attempts: Array<{ readonly key: string; readonly at: number }> = []
    const checks: Array<number> = []
    const stored = new Map<string, string>()
    const layer = Layer.succeed(
      ObjectStore,
      ObjectStore.of({
        put: (key, body) =>
          Effect.flatMap(Clock.currentTimeMillis, (at) => {
            const step = steps[Math.min(attempts.length, steps.length - 1)]!
            attempts.push({ key, at })
            return perform(step, Effect.sync(() => void stored.set(key, text(body))))
          }),
        check: Effect.flatMap(Clock.currentTimeMillis, (at) => {
          const step = checkSteps[Math.min(checks.length, checkSteps.length - 1)]!
          checks.push(at)
          return perform(step, Effect.void)
        })
      })
    )
    return { attempts, checks, stored, layer } as const
  })

export const retryable = (reason = "SlowDown") => storeError({ retryable: true, reason })
export const permanent = (reason = "AccessDenied") => storeError({ retryable: false, reason })

export const makeMemoryDeadLetter = Effect.sync(() => {
  const files = new Map<string, string>()
  const layer = Layer.succeed(
    DeadLetter,
    DeadLetter.of({
      write: (key, body) => Effect.sync(() => void files.set(key, text(body))),
      exists: (key) => Effect.sync(() => files.has(key))
    })
  )
  return { files, layer } as const
})

export const FailingDeadLetter = Layer.succeed(
  DeadLetter,
  DeadLetter.of({
    write: () => Effect.fail(storeError({ retryable: false, reason: "ENOSPC" })),
    exists: () => Effect.succeed(false)
  })
)
