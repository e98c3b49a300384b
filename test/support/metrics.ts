/**
 * Reading the service's `/metrics` (Prometheus text format) in end-to-end tests.
 */
import { call } from "./http.js"

/** The `/metrics` text of the service on `port`; rejects unless it answers 200. */
export const metricsText = async (port: number): Promise<string> => {
  const reply = await call(port, { method: "GET", path: "/metrics" })
  if (reply.status !== 200) throw new Error(`/metrics answered ${reply.status}: ${reply.text}`)
  return reply.text
}

/**
 * The sum of the samples of `name` whose labels include every one of `labels`; 0 when there is
 * none (a labelled counter has no sample until its first increment).
 */
export const metricValue = (text: string, name: string, labels: Readonly<Record<string, string>> = {}): number => {
  let total = 0
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line)
    if (match === null || match[1] !== name) continue
    const found = new Map<string, string>()
    for (const pair of (match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      found.set(pair[1] ?? "", pair[2] ?? "")
    }
    if (Object.entries(labels).every(([label, value]) => found.get(label) === value)) total += Number(match[3])
  }
  return total
}
