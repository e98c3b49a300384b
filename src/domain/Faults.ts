/**
 * The `STORE_FAULTS` grammar: comma-separated rules, each applied to every store attempt.
 *
 *   latency=200ms±100       wait 200 ms (± up to 100 ms, uniform) before the attempt
 *   error=0.2:SlowDown      fail 20 % of attempts with that S3 code (retryable or not, as S3's would be)
 *   hang=0.01               1 % of attempts never answer (the per-attempt deadline must cut them)
 *   applied-then-500=0.05   5 % of attempts write the object, then fail with 500 InternalError
 *   defect=0.01             1 % of attempts die with a defect (a bug, not a store error)
 *
 * Rules are checked in that order per attempt; probabilities are in [0, 1].
 */

export interface FaultPlan {
  readonly latencyMillis: number
  readonly latencyJitterMillis: number
  readonly errorRate: number
  readonly errorCode: string
  readonly hangRate: number
  readonly appliedThen500Rate: number
  readonly defectRate: number
}

export const noFaults: FaultPlan = {
  latencyMillis: 0,
  latencyJitterMillis: 0,
  errorRate: 0,
  errorCode: "SlowDown",
  hangRate: 0,
  appliedThen500Rate: 0,
  defectRate: 0
}

const probability = (text: string): number | undefined => {
  if (!/^(0(\.\d+)?|1(\.0+)?|\.\d+)$/.test(text)) return undefined
  return Number(text)
}

/** Parses a plan, or returns a message naming the rule at fault. */
export const parseFaults = (spec: string): FaultPlan | { readonly error: string } => {
  let plan: FaultPlan = noFaults
  for (const rule of spec.split(",").map((r) => r.trim()).filter((r) => r !== "")) {
    const eq = rule.indexOf("=")
    const name = eq < 0 ? rule : rule.slice(0, eq)
    const value = eq < 0 ? "" : rule.slice(eq + 1)
    switch (name) {
      case "latency": {
        const m = /^(\d+)ms(?:(?:±|\+-)(\d+))?$/.exec(value)
        if (m === null) return { error: `"${rule}": expected latency=<ms>ms or latency=<ms>ms±<ms>` }
        plan = { ...plan, latencyMillis: Number(m[1]), latencyJitterMillis: Number(m[2] ?? 0) }
        break
      }
      case "error": {
        const [rate, code] = value.split(":")
        const p = probability(rate ?? "")
        if (p === undefined || (code !== undefined && !/^[A-Za-z]+$/.test(code))) {
          return { error: `"${rule}": expected error=<probability>[:<S3 code>]` }
        }
        plan = { ...plan, errorRate: p, errorCode: code ?? "SlowDown" }
        break
      }
      case "hang":
      case "applied-then-500":
      case "defect": {
        const p = probability(value)
        if (p === undefined) return { error: `"${rule}": expected ${name}=<probability in [0, 1]>` }
        plan = name === "hang"
          ? { ...plan, hangRate: p }
          : name === "defect"
          ? { ...plan, defectRate: p }
          : { ...plan, appliedThen500Rate: p }
        break
      }
      default:
        return { error: `unknown rule "${name}" (latency, error, hang, applied-then-500, defect)` }
    }
  }
  return plan
}
