/**
 * The one-pass validator must agree with `JSON.parse` on what is JSON: for thousands of texts made
 * by mutating valid collections one character at a time, a body is `invalid_json` exactly when
 * `JSON.parse` throws.
 */
import { assert, describe, it } from "@effect/vitest"
import { parseCollection } from "../../src/domain/Collection.js"

// mulberry32: a small seeded PRNG, so every run checks the same texts.
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const ALPHABET = [..."{}[],:\"\\ 0123456789eE.+-tfnrulsa/b\n\t\r", "\u0001", "\u00e9", "\ud83d\ude00"]

const seeds = [
  { version: "1", token: "t", data: [{ id: 1, a: [1, 2, { b: null }], s: "x\"y\\z\u2028", n: -0.5e-3 }] },
  { token: "", data: [{}, { k: true, f: false, e: [] }], version: "v\u00e9" },
  { version: "2", token: "tok", data: [{ deep: [[[{ x: "1" }]]], u: "\ud800" }, { n: 12345678901234 }] }
]

const isJson = (text: string) => {
  try {
    JSON.parse(text)
    return true
  } catch {
    return false
  }
}

describe("Collection grammar", () => {
  it("agrees with JSON.parse on mutated texts", () => {
    const random = prng(20261201)
    const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(random() * xs.length)]!
    let checked = 0
    let rejected = 0
    for (const seed of seeds) {
      for (const base of [JSON.stringify(seed), JSON.stringify(seed, null, 2)]) {
        for (let n = 0; n < 1500; n++) {
          let text = base
          const edits = 1 + Math.floor(random() * 3)
          for (let e = 0; e < edits; e++) {
            const at = Math.floor(random() * (text.length + 1))
            const kind = random()
            if (kind < 0.35) text = text.slice(0, at) + text.slice(at + 1)
            else if (kind < 0.7) text = text.slice(0, at) + pick(ALPHABET) + text.slice(at)
            else if (kind < 0.95) text = text.slice(0, at) + pick(ALPHABET) + text.slice(at + 1)
            else text = text.slice(0, at)
          }
          const parsed = parseCollection(text, 1000)
          const malformed = parsed._tag === "Invalid" && parsed.error.reason === "invalid_json"
          if (malformed === isJson(text)) assert.fail(`disagrees with JSON.parse on ${JSON.stringify(text)}`)
          if (!isJson(text)) rejected++
          if (parsed._tag === "Collection") {
            const data = (JSON.parse(text) as { data: Array<unknown> }).data
            assert.deepStrictEqual(parsed.collection.lines.map((l) => JSON.parse(l) as unknown), data, JSON.stringify(text))
          }
          checked++
        }
      }
    }
    assert.isAbove(rejected, checked / 4, "the mutations produce plenty of malformed texts")
    assert.isAbove(checked - rejected, checked / 20, "and some valid ones")
  })
})
