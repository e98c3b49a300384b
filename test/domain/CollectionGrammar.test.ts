/**
 * The one-pass validator must agree with `JSON.parse` on what is JSON: for thousands of bodies made
 * by mutating valid collections a character or a byte at a time, a body is `invalid_json` exactly
 * when strict UTF-8 decoding or `JSON.parse` throws, and the lines of a valid one parse to its
 * payloads.
 */
import { assert, describe, it } from "@effect/vitest"
import { parseBody } from "../support/collections.js"

// mulberry32: a small seeded PRNG, so every run checks the same bodies.
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const ALPHABET = [..."{}[],:\"\\ 0123456789eE.+-tfnrulsa/b\n\t\r", "\u0001", "\u00e9", "\ud83d\ude00"]
// Lead and continuation bytes, an overlong lead, an encoded surrogate's, bytes never in UTF-8, a BOM's.
const BYTES = [
  0x80, 0xbf, 0xc0, 0xc3, 0xa9, 0xe2, 0x82, 0xed, 0xa0, 0xf0, 0x9f, 0xf4, 0x90, 0xf8, 0xff, 0xef, 0xbb, 0x00, 0x7f
]

const seeds = [
  { version: "1", token: "t", data: [{ id: 1, a: [1, 2, { b: null }], s: "x\"y\\z\u2028", n: -0.5e-3 }] },
  { token: "", data: [{}, { k: true, f: false, e: [] }], version: "v\u00e9" },
  { version: "2", token: "tok", data: [{ deep: [[[{ x: "1" }]]], u: "\ud800" }, { n: 12345678901234 }] }
]
const bases = seeds.flatMap((seed) => [JSON.stringify(seed), JSON.stringify(seed, null, 2)])

const strictUtf8 = new TextDecoder("utf-8", { fatal: true })

/** The body's value as a strict UTF-8 decoder and `JSON.parse` see it; undefined when it is not JSON. */
const jsonOf = (body: Uint8Array): { readonly value: unknown } | undefined => {
  try {
    return { value: JSON.parse(strictUtf8.decode(body)) as unknown }
  } catch {
    return undefined
  }
}

/** Fails the test when the validator and the oracle disagree on `body`; true when it is JSON. */
const check = (body: Buffer): boolean => {
  const json = jsonOf(body)
  const parsed = parseBody(Buffer.from(body), 1000)
  const malformed = parsed._tag === "Invalid" && parsed.error.reason === "invalid_json"
  if (malformed === (json !== undefined)) assert.fail(`disagrees with JSON.parse on ${body.toString("hex")}`)
  if (parsed._tag === "Collection") {
    const data = (json!.value as { data: Array<unknown> }).data
    assert.deepStrictEqual(parsed.lines.map((l) => JSON.parse(l) as unknown), data, body.toString("hex"))
  }
  return json !== undefined
}

/** Mutates `base` 1–3 times: deletes, inserts or replaces an element, or truncates. */
const mutate = <A>(random: () => number, base: ReadonlyArray<A>, alphabet: ReadonlyArray<A>): Array<A> => {
  const out = [...base]
  const edits = 1 + Math.floor(random() * 3)
  for (let e = 0; e < edits; e++) {
    const at = Math.floor(random() * (out.length + 1))
    const kind = random()
    const pick = alphabet[Math.floor(random() * alphabet.length)]!
    if (kind < 0.35) out.splice(at, 1)
    else if (kind < 0.7) out.splice(at, 0, pick)
    else if (kind < 0.95) out.splice(at, 1, pick)
    else out.length = at
  }
  return out
}

describe("Collection grammar", () => {
  it("agrees with JSON.parse on texts mutated a character at a time", () => {
    const random = prng(20261201)
    let checked = 0
    let valid = 0
    for (const base of bases) {
      // Characters, not UTF-16 code units: a mutation never splits a surrogate pair of the seed.
      const chars = [...base]
      for (let n = 0; n < 1500; n++) {
        if (check(Buffer.from(mutate(random, chars, ALPHABET).join(""), "utf8"))) valid++
        checked++
      }
    }
    assert.isBelow(valid, (checked * 3) / 4, "the mutations produce plenty of malformed texts")
    assert.isAbove(valid, checked / 20, "and some valid ones")
  })

  it("agrees with strict UTF-8 decoding on bodies mutated a byte at a time", () => {
    const random = prng(20261202)
    let checked = 0
    let valid = 0
    for (const base of bases) {
      const bytes = [...Buffer.from(base, "utf8")]
      for (let n = 0; n < 1000; n++) {
        if (check(Buffer.from(mutate(random, bytes, BYTES)))) valid++
        checked++
      }
    }
    assert.isBelow(valid, checked / 2, "most byte mutations break the UTF-8 or the JSON")
    assert.isAbove(valid, checked / 50, "some land inside strings and keep both")
  })

  it("ignores a UTF-8 byte order mark before the text, as a strict decoder does", () => {
    const body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(bases[0]!, "utf8")])
    assert.isTrue(check(body))
    assert.isFalse(check(Buffer.concat([Buffer.from([0xef, 0xbb]), Buffer.from(bases[0]!, "utf8")])))
  })
})
