/**
 * A deadline for many concurrent effects, kept by one fiber (the Uploader's per-attempt
 * deadline).
 *
 * `Effect.timeoutOption` races the effect against a sleep: two forked fibers, a join and a timer
 * per use, which per uploaded batch cost more than the rest of the upload's Effect code. Here the
 * effect runs on one child fiber and a single fiber in the scope interrupts the children that
 * pass their deadline. Every deadline is the same length after its start, so the oldest effect
 * in flight is always the next one due: the fiber sleeps until then, and waking for one that
 * finished early costs one check. Under steady load it wakes about once per deadline length,
 * not once per effect.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"

export interface Deadlines {
  /**
   * `self` on a child fiber, interrupted (down to its I/O) when it has not finished `millis`
   * after it started: then `None`, as `Effect.timeoutOption` gives. Interrupting the caller
   * interrupts `self` and waits for it.
   */
  readonly within: <A, E>(self: Effect.Effect<A, E>) => Effect.Effect<Option.Option<A>, E>
}

interface InFlight {
  readonly fiber: Fiber.RuntimeFiber<unknown, unknown>
  readonly due: number
  timedOut: boolean
}

export const makeDeadlines = (millis: number): Effect.Effect<Deadlines, never, Scope.Scope> =>
  Effect.gen(function*() {
    // The effects in flight, in the order they started: the first is the next one due.
    const inFlight: Array<InFlight> = []
    const busy = yield* Effect.makeLatch(false)

    const expire = Effect.gen(function*() {
      while (true) {
        yield* busy.await
        const now = yield* Clock.currentTimeMillis
        while (inFlight.length > 0 && inFlight[0]!.due <= now) {
          const due = inFlight.shift()!
          due.timedOut = true
          yield* Fiber.interruptFork(due.fiber)
        }
        if (inFlight.length === 0) busy.unsafeClose()
        else yield* Effect.sleep(Duration.millis(inFlight[0]!.due - now))
      }
    })
    // Layers are built uninterruptibly and a fork inherits that.
    yield* Effect.forkScoped(Effect.interruptible(expire))

    const settle = (entry: InFlight) => {
      const at = inFlight.indexOf(entry)
      if (at >= 0) inFlight.splice(at, 1)
    }

    const within = <A, E>(self: Effect.Effect<A, E>): Effect.Effect<Option.Option<A>, E> =>
      Effect.uninterruptibleMask((restore) =>
        // The child ends in its Exit rather than its failure: the caller handles the failure, and
        // a failed fiber would be logged as "terminated with an unhandled error".
        Effect.flatMap(Effect.fork(Effect.exit(restore(self))), (fiber) =>
          Effect.flatMap(Clock.currentTimeMillis, (now) => {
            const entry: InFlight = { fiber, due: now + millis, timedOut: false }
            inFlight.push(entry)
            busy.unsafeOpen()
            return Effect.matchCauseEffect(restore(Fiber.await(fiber)), {
              // Only the caller's interruption ends the wait early: `self` goes with it.
              onFailure: (cause) => {
                settle(entry)
                return Effect.zipRight(Fiber.interrupt(fiber), Effect.failCause(cause))
              },
              onSuccess: (child) => {
                settle(entry)
                const exit = Exit.flatten(child)
                return entry.timedOut && Exit.isInterrupted(exit)
                  ? Effect.succeedNone
                  : Exit.match(exit, { onFailure: Effect.failCause, onSuccess: Effect.succeedSome })
              }
            })
          })))

    return { within }
  })
