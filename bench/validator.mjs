#!/usr/bin/env node
// `npm run bench:validator`: the request validator alone (dist/domain/Collection.js), with the
// i-json and the json profile, against `JSON.parse` of the same bytes, which is all the node:http
// ceiling does with a body. Bodies of 1 and 10 payloads of about 1 KiB each, shaped like the
// comparison kit's; best of 8 rounds. (The first profile measured runs before the JIT has seen
// the other: compare profiles across runs, not within one.)
import { parseCollection } from "../dist/domain/Collection.js"
import { body } from "./bodies.mjs"

const best = (f, rounds = 8, iterations = 5000) => {
  let min = Infinity
  for (let r = 0; r < rounds; r++) {
    const start = process.hrtime.bigint()
    for (let i = 0; i < iterations; i++) f()
    min = Math.min(min, Number(process.hrtime.bigint() - start) / 1000 / iterations)
  }
  return min
}

for (const n of [1, 10]) {
  const bytes = body(n)
  if (parseCollection(bytes, 64)._tag !== "Collection") throw new Error("the bench body does not validate")
  const strict = best(() => parseCollection(bytes, 64, "i-json"))
  const plain = best(() => parseCollection(bytes, 64, "json"))
  const jsonParse = best(() => JSON.parse(bytes.toString("utf8")))
  process.stdout.write(
    `${n} payload(s), ${bytes.length} bytes: validator ${strict.toFixed(2)} µs with i-json ` +
      `(ratio ${(strict / jsonParse).toFixed(2)}), ${plain.toFixed(2)} µs with json ` +
      `(ratio ${(plain / jsonParse).toFixed(2)}); JSON.parse ${jsonParse.toFixed(2)} µs\n`
  )
}
