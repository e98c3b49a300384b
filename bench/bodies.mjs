// Request bodies for the project's own benchmarks: payloads of about 1 KiB, shaped like the
// comparison kit's.
export const payload = (i) => ({
  id: `evt-${String(i).padStart(8, "0")}`,
  ts: 1732300000000 + i,
  host: `web-${i}.example.internal`,
  service: "checkout",
  level: "info",
  metrics: { cpu: 0.42, memMb: 812.5, latencyMs: 12.7, rps: 3812, errors: 0 },
  tags: ["prod", "eu-west-1", "blue", `shard-${i}`],
  message: "lorem ipsum dolor sit amet ".repeat(30).trim()
})

/** A collection of `n` payloads, as the bytes a client sends. */
export const body = (n, token = "0123456789abcdef") => {
  const data = Array.from({ length: n }, (_, i) => payload(i))
  return Buffer.from(JSON.stringify({ version: "1.0", token, data }))
}

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

/** A log record shaped like real service telemetry: seeded, varied ids, times, paths and latencies. */
export const telemetry = (i) => ({
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
