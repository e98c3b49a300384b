/**
 * The one-pass validator must agree with `JSON.parse` on what is JSON: for bodies made by mutating
 * valid collections a character or a byte at a time, a body is `invalid_json` exactly when strict
 * UTF-8 decoding or `JSON.parse` throws, and the lines of a valid one parse to its payloads. The
 * plain `json` profile: the I-JSON rules have their own reference (CollectionIJson.test.ts).
 */
import { assert, describe, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import { parseBody } from "../support/collections.js"

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

/** Fails the test when the validator and the oracle disagree on `body`. */
const check = (body: Buffer): void => {
  const json = jsonOf(body)
  const parsed = parseBody(Buffer.from(body), 1000)
  const malformed = parsed._tag === "Invalid" && parsed.error.reason === "invalid_json"
  if (malformed === (json !== undefined)) assert.fail(`disagrees with JSON.parse on ${body.toString("hex")}`)
  if (parsed._tag === "Collection") {
    const data = (json!.value as { data: Array<unknown> }).data
    assert.deepStrictEqual(parsed.lines.map((l) => JSON.parse(l) as unknown), data, body.toString("hex"))
  }
}

/** 1–3 edits of a sequence: delete, insert or replace an element, or truncate. */
const edits = <A>(alphabet: ReadonlyArray<A>) =>
  FastCheck.array(
    FastCheck.record({
      at: FastCheck.nat(),
      kind: FastCheck.constantFrom("delete", "insert", "replace", "truncate"),
      pick: FastCheck.constantFrom(...alphabet)
    }),
    { minLength: 1, maxLength: 3 }
  )

const mutate = <A>(base: ReadonlyArray<A>, changes: ReadonlyArray<{ at: number; kind: string; pick: A }>): Array<A> => {
  const out = [...base]
  for (const { at: raw, kind, pick } of changes) {
    const at = raw % (out.length + 1)
    if (kind === "delete") out.splice(at, 1)
    else if (kind === "insert") out.splice(at, 0, pick)
    else if (kind === "replace") out.splice(at, 1, pick)
    else out.length = at
  }
  return out
}

// Characters, not UTF-16 code units: a mutation never splits a surrogate pair of the seed.
const charMutants = FastCheck.tuple(FastCheck.constantFrom(...bases), edits(ALPHABET)).map(([base, changes]) =>
  Buffer.from(mutate([...base], changes).join(""), "utf8")
)
const byteMutants = FastCheck.tuple(FastCheck.constantFrom(...bases), edits(BYTES)).map(([base, changes]) =>
  Buffer.from(mutate([...Buffer.from(base, "utf8")], changes))
)

describe("Collection grammar", () => {
  it.prop("agrees with JSON.parse on texts mutated a character at a time", [charMutants], ([body]) => check(body), {
    fastCheck: { numRuns: 6000, seed: 20261201 }
  })

  it.prop("agrees with strict UTF-8 decoding on bodies mutated a byte at a time", [byteMutants], ([body]) => check(body), {
    fastCheck: { numRuns: 4000, seed: 20261202 }
  })

  it("the mutations make both malformed and valid bodies", () => {
    for (const [arbitrary, least] of [[charMutants, 0.05], [byteMutants, 0.02]] as const) {
      const bodies = FastCheck.sample(arbitrary, { numRuns: 1000, seed: 7 })
      const valid = bodies.filter((body) => jsonOf(body) !== undefined).length
      assert.isAbove(valid, bodies.length * least, "some valid")
      assert.isBelow(valid, bodies.length * 0.75, "plenty malformed")
    }
  })

  it("ignores a UTF-8 byte order mark before the text, as a strict decoder does", () => {
    const body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(bases[0]!, "utf8")])
    check(body)
    assert.isDefined(jsonOf(body))
    const broken = Buffer.concat([Buffer.from([0xef, 0xbb]), Buffer.from(bases[0]!, "utf8")])
    check(broken)
    assert.isUndefined(jsonOf(broken))
  })
})
