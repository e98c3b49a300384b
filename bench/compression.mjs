#!/usr/bin/env node
// `npm run bench:compression`: what each gzip level costs and gives on a batch as the service
// writes it (1,000 NDJSON lines): CPU milliseconds per MB of raw NDJSON (best of 5 rounds, one
// thread, zlib as the service calls it) and the ratio raw ÷ compressed. Two corpora: telemetry
// shaped like real service logs (seeded, varied: ids, timestamps, paths, latencies, messages),
// and the comparison kit's payloads (repetitive text, the kind that compresses best).
import { gzipSync } from "node:zlib"
import { payload } from "./bodies.mjs"

let seed = 42
const random = () => {
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 2147483648
}
const pick = (list) => list[Math.floor(random() * list.length)]
const hex = (n) => Array.from({ length: n }, () => "0123456789abcdef"[Math.floor(random() * 16)]).join("")

const services = ["checkout", "cart", "search", "auth", "payments", "inventory", "gateway"]
const paths = ["/api/v1/orders", "/api/v1/cart/items", "/api/v2/search", "/login", "/api/v1/payments/authorize"]
const messages = [
  "request completed",
  "cache miss, loading from database",
  "upstream responded slowly",
  "user session refreshed",
  "retrying request after timeout",
  "payment authorized",
  "inventory reserved for order"
]

const telemetry = (i) => ({
  ts: new Date(1764770400000 + i * 37 + Math.floor(random() * 30)).toISOString(),
  level: pick(["info", "info", "info", "warn", "error", "debug"]),
  service: pick(services),
  host: `ip-10-${Math.floor(random() * 256)}-${Math.floor(random() * 256)}-${Math.floor(random() * 256)}`,
  trace_id: hex(32),
  span_id: hex(16),
  msg: pick(messages),
  http: {
    method: pick(["GET", "GET", "POST", "PUT", "DELETE"]),
    path: `${pick(paths)}/${Math.floor(random() * 100000)}`,
    status: pick([200, 200, 200, 201, 204, 304, 400, 404, 500, 503]),
    duration_ms: Math.round(random() * 250000) / 100,
    bytes: Math.floor(random() * 20000)
  },
  user_id: `u-${Math.floor(random() * 1e6)}`,
  region: pick(["eu-west-1", "us-east-1", "ap-southeast-2"]),
  build: "2026.12.1-3f9a1c0"
})

const batch = (make) => Buffer.from(Array.from({ length: 1000 }, (_, i) => JSON.stringify(make(i)) + "\n").join(""))

const cpuMillis = (raw, level) => {
  let best = Infinity
  for (let round = 0; round < 5; round++) {
    const start = process.cpuUsage()
    const runs = 10
    for (let i = 0; i < runs; i++) gzipSync(raw, { level })
    const used = process.cpuUsage(start)
    best = Math.min(best, (used.user + used.system) / 1000 / runs)
  }
  return best
}

for (const [name, raw] of [["telemetry", batch(telemetry)], ["kit", batch(payload)]]) {
  const mb = raw.length / 1e6
  process.stdout.write(`\n${name}: 1,000 lines, ${(raw.length / 1000).toFixed(0)} KB raw\n\n`)
  process.stdout.write("| level | ratio | CPU ms per MB | stored bytes per payload |\n|---|---|---|---|\n")
  for (let level = 1; level <= 9; level++) {
    const stored = gzipSync(raw, { level }).length
    const ms = cpuMillis(raw, level) / mb
    process.stdout.write(
      `| ${level} | ${(raw.length / stored).toFixed(2)} | ${ms.toFixed(2)} | ${(stored / 1000).toFixed(0)} |\n`
    )
  }
}
