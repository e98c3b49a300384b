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
