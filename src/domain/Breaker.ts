/**
 * The store circuit breaker as a pure state machine (DESIGN §2). After `failures` consecutive
 * retryable failures, or at once on a permanent one, it opens: no attempts for the cooldown
 * (doubling per failed probe, capped at 30 s), then one half-open probe; success closes it.
 * While it is open the queue holds its batches instead of burning retries against a store that
 * is down, and intake sheds above the high-water mark.
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
  readonly probeInFlight: boolean
}

export interface BreakerSettings {
  readonly failures: number
  readonly cooldownMillis: number
}

export const closedBreaker = (settings: BreakerSettings): BreakerState => ({
  status: "closed",
  failures: 0,
  cooldownMillis: settings.cooldownMillis,
  openUntil: 0,
  probeInFlight: false
})

/** What an attempt may do now. */
export type Permit =
  | { readonly _tag: "Attempt"; readonly probe: boolean; readonly next: BreakerState }
  | { readonly _tag: "Wait"; readonly millis: number }

/** Asks for an attempt at `now`: go ahead, go ahead as the half-open probe, or wait. */
export const permit = (state: BreakerState, now: number): Permit => {
  switch (state.status) {
    case "closed":
      return { _tag: "Attempt", probe: false, next: state }
    case "open":
      return now >= state.openUntil
        ? { _tag: "Attempt", probe: true, next: { ...state, status: "half-open", probeInFlight: true } }
        : { _tag: "Wait", millis: state.openUntil - now }
    case "half-open":
      // One probe at a time; the others check again shortly.
      return { _tag: "Wait", millis: Math.min(100, state.cooldownMillis) }
  }
}

export const onSuccess = (settings: BreakerSettings): BreakerState => closedBreaker(settings)

/** A failed attempt: counts towards opening, opens at once when permanent or when it was the probe. */
export const onFailure = (
  state: BreakerState,
  settings: BreakerSettings,
  now: number,
  failure: { readonly retryable: boolean; readonly probe: boolean }
): BreakerState => {
  if (failure.probe) {
    const cooldownMillis = Math.min(BREAKER_MAX_COOLDOWN_MILLIS, state.cooldownMillis * 2)
    return { status: "open", failures: 0, cooldownMillis, openUntil: now + cooldownMillis, probeInFlight: false }
  }
  if (state.status !== "closed") return state
  const failures = state.failures + 1
  if (!failure.retryable || failures >= settings.failures) {
    return {
      status: "open",
      failures: 0,
      cooldownMillis: state.cooldownMillis,
      openUntil: now + state.cooldownMillis,
      probeInFlight: false
    }
  }
  return { ...state, failures }
}

export const breakerGauge = (status: BreakerStatus): 0 | 1 | 2 =>
  status === "closed" ? 0 : status === "half-open" ? 1 : 2
