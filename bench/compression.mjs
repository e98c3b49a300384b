#!/usr/bin/env node
// `npm run bench:compression`: what each gzip level costs and gives on a batch as the service
// writes it (1,000 NDJSON lines): CPU milliseconds per MB of raw NDJSON (best of 5 rounds, one
// thread, zlib as the service calls it) and the ratio raw ÷ compressed. Two corpora: telemetry
// shaped like real service logs (seeded, varied: ids, timestamps, paths, latencies, messages),
// and the comparison kit's payloads (repetitive text, the kind that compresses best).
import { gzipSync } from "node:zlib"
import { payload, telemetry } from "./bodies.mjs"

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
