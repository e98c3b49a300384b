/**
 * Fault injection around any ObjectStore (`STORE_FAULTS`), so operators can rehearse a slow,
 * throttling, hanging or half-failing store on the embedded one, and tests can script it.
 * Faults go through the same paths as real ones: errors are StoreErrors classified as S3's would
 * be, hangs are cut by the Uploader's deadline, and `applied-then-500` really writes first. The
 * store check (the breaker's probe) meets the same latency, errors, hangs and defects: a store
 * that fails every PUT is not one whose check passes.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import type { FaultPlan } from "../domain/Faults.js"
import { isRetryableFailure } from "../domain/StoreFailure.js"
import { ObjectStore, type ObjectStoreShape, type StoreError, storeError } from "../services/ObjectStore.js"

/** Latency, then an injected error, hang or defect, each drawn at its rate; else `request`. */
const faulty = (plan: FaultPlan) => <A>(request: Effect.Effect<A, StoreError>): Effect.Effect<A, StoreError> =>
  Effect.gen(function*() {
    if (plan.latencyMillis > 0 || plan.latencyJitterMillis > 0) {
      const jitter = plan.latencyJitterMillis * (2 * (yield* Random.next) - 1)
      yield* Effect.sleep(Duration.millis(Math.max(0, plan.latencyMillis + jitter)))
    }
    if ((yield* Random.next) < plan.errorRate) {
      return yield* storeError({
        retryable: isRetryableFailure({ code: plan.errorCode }),
        reason: `${plan.errorCode}: injected fault`,
        code: plan.errorCode
      })
    }
    if ((yield* Random.next) < plan.hangRate) return yield* Effect.never
    if ((yield* Random.next) < plan.defectRate) return yield* Effect.dieMessage("injected defect")
    return yield* request
  })

export const withFaults = (plan: FaultPlan) => (store: ObjectStoreShape): ObjectStoreShape => {
  const inject = faulty(plan)
  return {
    put: (key, body) =>
      inject(Effect.gen(function*() {
        const appliedThenFail = (yield* Random.next) < plan.appliedThen500Rate
        yield* store.put(key, body)
        if (appliedThenFail) {
          return yield* storeError({
            retryable: true,
            reason: "InternalError (HTTP 500): injected after write",
            code: "InternalError",
            status: 500
          })
        }
      })),
    check: inject(store.check)
  }
}

/** Wraps the ObjectStore provided below it. */
export const FaultyObjectStore = (plan: FaultPlan): Layer.Layer<ObjectStore, never, ObjectStore> =>
  Layer.effect(ObjectStore, Effect.map(ObjectStore, withFaults(plan)))
