/**
 * The store circuit breaker as a pure state machine. After `failures` consecutive retryable
 * failures, or at once on a permanent one, it opens: no attempts for the cooldown, then one
 * half-open probe (a store check); success closes it, failure reopens it for twice the cooldown
 * (capped at 30 s). While it is open the queue holds its batches instead of burning retries
 * against a store that is down, and intake sheds above the high-water mark.
 *
 * A probe proves the store answers, not that it takes our writes (a bucket policy may allow
 * the check and refuse the PUT): until an upload succeeds, a breaker that a probe closed opens
 * next time for twice its last cooldown, so a store in that state is not hammered every second.
 */

export const BREAKER_MAX_COOLDOWN_MILLIS = 30_000

export type BreakerStatus = "closed" | "open" | "half-open"

export interface BreakerState {
  readonly status: BreakerStatus
  /** Consecutive retryable failures while closed. */
  readonly failures: number
  /** The cooldown of the current (or next) opening. */
  readonly cooldownMillis: number
  /** Epoch millis at which an open breaker admits its probe. */
  readonly openUntil: number
}

export interface BreakerSettings {
  readonly failures: number
  readonly cooldownMillis: number
}

export const closedBreaker = (settings: BreakerSettings): BreakerState => ({
  status: "closed",
  failures: 0,
  cooldownMillis: settings.cooldownMillis,
  openUntil: 0
})

const doubled = (cooldownMillis: number): number => Math.min(BREAKER_MAX_COOLDOWN_MILLIS, cooldownMillis * 2)

/** An upload succeeded: the store takes our writes. */
export const onSuccess = (settings: BreakerSettings): BreakerState => closedBreaker(settings)

/** A failed upload attempt: counts towards opening; opens at once when it is permanent. */
export const onFailure = (
  state: BreakerState,
  settings: BreakerSettings,
  now: number,
  retryable: boolean
): BreakerState => {
  if (state.status !== "closed") return state
  const failures = state.failures + 1
  if (retryable && failures < settings.failures) return { ...state, failures }
  return { status: "open", failures: 0, cooldownMillis: state.cooldownMillis, openUntil: now + state.cooldownMillis }
}

/** The probe may start: the breaker is open and its cooldown has passed. */
export const probeDue = (state: BreakerState, now: number): boolean => state.status === "open" && now >= state.openUntil

export const onProbeStart = (state: BreakerState): BreakerState => ({ ...state, status: "half-open" })

/** The store answered the probe: closed, with the next opening twice as long until an upload succeeds. */
export const onProbeSuccess = (state: BreakerState): BreakerState =>
  state.status === "half-open"
    ? { status: "closed", failures: 0, cooldownMillis: doubled(state.cooldownMillis), openUntil: 0 }
    : state

/** The probe failed, timed out or died: open again for twice the cooldown. */
export const onProbeFailure = (state: BreakerState, now: number): BreakerState => {
  if (state.status !== "half-open") return state
  const cooldownMillis = doubled(state.cooldownMillis)
  return { status: "open", failures: 0, cooldownMillis, openUntil: now + cooldownMillis }
}

export const breakerGauge = (status: BreakerStatus): 0 | 1 | 2 =>
  status === "closed" ? 0 : status === "half-open" ? 1 : 2
