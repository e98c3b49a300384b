/**
 * Keeps V8's young generation at the size start-up gave it (16 MB with the modules the service
 * loads: two semi-spaces of 8 MB) instead of letting it double to 32 MB under load.
 *
 * Why: a flood (above all one answered with 503s) keeps the young generation full, and V8 grows it
 * to its 16 MB semi-space maximum, 32 MB resident. Held at 16 MB, the stall suite's peak RSS fell
 * from 205 to 185–187 MB, for twice the scavenges (66–73 against 36–37 in 8 s of 10-payload
 * intake, +30–40 ms of scavenging), no more promotion and no mark-compacts (BENCHMARKS.md).
 *
 * How: `--max-semi-space-size` is read only when the heap is set up, so it cannot be given to a
 * process that is already running, and `node dist/main.js service` carries no flags. The growth
 * factor is read at every growth: at 1 the young generation keeps its size. An operator who sizes
 * the young generation through node's own flags or `NODE_OPTIONS` is left alone.
 */
import { getHeapSpaceStatistics, setFlagsFromString } from "node:v8"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/** Whether node's own flags already size the young generation. */
export const sizedByOperator = (execArgv: ReadonlyArray<string>, nodeOptions: string | undefined): boolean =>
  [...execArgv, ...(nodeOptions ?? "").split(/\s+/)].some((flag) => /^--(max|min)[-_]semi[-_]space[-_]size/.test(flag))

/** Bytes V8 has given its young generation (both semi-spaces), or undefined when it reports none. */
export const youngGenerationBytes = (): number | undefined =>
  getHeapSpaceStatistics().find((space) => space.space_name === "new_space")?.space_size

export const YoungGenerationCapLive: Layer.Layer<never> = Layer.effectDiscard(
  Effect.suspend(() => {
    if (sizedByOperator(process.execArgv, process.env.NODE_OPTIONS)) {
      return Effect.logInfo("young generation sized by node flags: left as given")
    }
    setFlagsFromString("--semi-space-growth-factor=1")
    return Effect.logDebug("young generation capped").pipe(Effect.annotateLogs({ bytes: youngGenerationBytes() }))
  })
)
