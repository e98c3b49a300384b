/**
 * Process-wide shutdown state shared by the edge, the queue and main: readiness, whether intake
 * is open, the shutdown deadline, and the exit code the shutdown summary decided. main.ts creates
 * it before the app so its `teardown` can read the exit code after every finalizer has run.
 */
import * as Context from "effect/Context"

export interface LifecycleShape {
  /** `/readyz`: false from the first moment of shutdown. */
  ready: boolean
  /** New collections are admitted; false once the shutdown delay has passed. */
  intakeOpen: boolean
  /** Epoch millis by which the process must have exited; set once, by the first finalizer. */
  deadline: number | undefined
  /** 0 nothing lost or dead-lettered, 1 something dead-lettered, 2 something lost. */
  exitCode: number
}

export class Lifecycle extends Context.Tag("s3-ingest/Lifecycle")<Lifecycle, LifecycleShape>() {}

export const makeLifecycle = (): LifecycleShape => ({
  ready: true,
  intakeOpen: true,
  deadline: undefined,
  exitCode: 0
})

/** Starts the shutdown clock once; later callers get the same deadline. */
export const beginShutdown = (lifecycle: LifecycleShape, now: number, budgetMillis: number): number => {
  lifecycle.ready = false
  if (lifecycle.deadline === undefined) lifecycle.deadline = now + budgetMillis
  return lifecycle.deadline
}
