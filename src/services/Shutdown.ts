/**
 * The one owner of shutdown: its phases and its deadline. The edge begins it (readiness turns
 * off at once), closes intake after `SHUTDOWN_DELAY_MS`, the queue drains until `drainUntil` and
 * then completes the summary, from which the process's exit code follows. The phases are read on
 * the request path, so they are plain fields read through functions; only this module writes them.
 * The phases in order are in docs/ARCHITECTURE.md (Start and stop).
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { AppConfig } from "./AppConfig.js"

/** What became of every payload accepted, as the queue's finalizer found it. */
export interface ShutdownSummary {
  readonly accepted: number
  /** Found unsettled in the journal at start. */
  readonly recovered: number
  readonly stored: number
  readonly deadLettered: number
  /** Not stored, left in the journal for the next start. */
  readonly journaled: number
  readonly lost: number
}

/** 0 everything stored, 1 something dead-lettered or left in the journal, 2 something lost. */
export const exitCodeOf = (summary: ShutdownSummary): 0 | 1 | 2 =>
  summary.lost > 0 ? 2 : summary.deadLettered > 0 || summary.journaled > 0 ? 1 : 0

/** Time kept back from the shutdown budget for closing the listener and dead-lettering. */
export const SHUTDOWN_RESERVE_MILLIS = 2_000

export interface ShutdownShape {
  /** `/readyz`: false from the first moment of shutdown. */
  readonly ready: () => boolean
  /** New collections are admitted: true until `closeIntake`. */
  readonly intakeOpen: () => boolean
  /**
   * Begins the shutdown, once: readiness turns off and the budget starts. Every caller gets the
   * same epoch millis by which the drain must end (the budget minus a reserve for what follows).
   */
  readonly drainUntil: Effect.Effect<number>
  readonly closeIntake: Effect.Effect<void>
  /** The queue's summary; the exit code follows from it. */
  readonly complete: (summary: ShutdownSummary) => Effect.Effect<void>
}

export class Shutdown extends Context.Tag("s3-ingest/Shutdown")<Shutdown, ShutdownShape>() {
  /** Shutdown for one run of the service; `summary` receives the queue's summary. */
  static readonly layer = (summary: Deferred.Deferred<ShutdownSummary>): Layer.Layer<Shutdown, never, AppConfig> =>
    Layer.effect(
      Shutdown,
      Effect.map(AppConfig, ({ shutdownTimeoutMs }) => {
        let ready = true
        let intakeOpen = true
        let drainUntil: number | undefined
        const reserve = Math.min(SHUTDOWN_RESERVE_MILLIS, shutdownTimeoutMs / 2)
        return Shutdown.of({
          ready: () => ready,
          intakeOpen: () => intakeOpen,
          drainUntil: Effect.map(Clock.currentTimeMillis, (now) => {
            ready = false
            drainUntil ??= now + shutdownTimeoutMs - reserve
            return drainUntil
          }),
          closeIntake: Effect.sync(() => {
            intakeOpen = false
          }),
          complete: (done) => Effect.asVoid(Deferred.succeed(summary, done))
        })
      })
    )
}
