/**
 * The I-JSON profile (RFC 7493): a collection is refused with `invalid_json` when a payload gives
 * a member name twice in one object (at any depth), holds an escaped lone surrogate, or a number
 * beyond a double's range. Checked case by case, then against a small strict reference parser on
 * generated payloads.
 */
import { assert, describe, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import { parseText } from "../support/collections.js"

const body = (...elements: ReadonlyArray<string>) => `{"version":"1.4","token":"t","data":[${elements.join(",")}]}`

type Rule = "duplicate" | "surrogate" | "overflow"

const ruleOf = (message: string): Rule | undefined =>
  message.includes("member name twice")
    ? "duplicate"
    : message.includes("lone surrogate")
    ? "surrogate"
    : message.includes("beyond a double")
    ? "overflow"
    : undefined

/** The rule the strict profile names for `text`, or undefined when it accepts it. */
const refusal = (text: string): Rule | undefined => {
  const parsed = parseText(text, 64, "i-json")
  if (parsed._tag === "Collection") return undefined
  assert.strictEqual(parsed.error.reason, "invalid_json", parsed.error.message)
  const rule = ruleOf(parsed.error.message)
  assert.isDefined(rule, `an I-JSON rule is named: ${parsed.error.message}`)
  return rule
}

describe("I-JSON profile", () => {
  it("refuses a member name given twice in one object, at any depth, escaped or not", () => {
    assert.strictEqual(refusal(body(`{"id":1,"a":1,"a":2}`)), "duplicate")
    assert.strictEqual(refusal(body(`{"id":1}`, `{"x":{"y":[{"z":1,"z":1}]}}`)), "duplicate")
    assert.strictEqual(refusal(body(`{"a":1,"\\u0061":2}`)), "duplicate", "one name, two spellings")
    const many = Array.from({ length: 40 }, (_, i) => `"k${i}":${i}`)
    assert.strictEqual(refusal(body(`{${[...many, `"k17":0`].join(",")}}`)), "duplicate", "past the small-object path")
    assert.isUndefined(refusal(body(`{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}`)), "the same name in other objects")
    assert.isUndefined(refusal(body(`{${many.join(",")}}`)))
  })

  it("refuses an escaped lone surrogate in a value or a name, and takes escaped pairs", () => {
    assert.strictEqual(refusal(body(`{"s":"\\ud800"}`)), "surrogate")
    assert.strictEqual(refusal(body(`{"s":"a\\udc00b"}`)), "surrogate")
    assert.strictEqual(refusal(body(`{"s":"\\ud800\\u0041"}`)), "surrogate", "a high one followed by no low one")
    assert.strictEqual(refusal(body(`{"\\udfff":1}`)), "surrogate")
    assert.isUndefined(refusal(body(`{"s":"\\ud83d\\ude00","t":"😀","u":"\\u00e9"}`)))
  })

  it("refuses a number beyond a double's range, and takes the largest and the tiniest", () => {
    for (const n of ["1e309", "-1e309", "1.8e308", "2E+400", `1${"0".repeat(309)}`]) {
      assert.strictEqual(refusal(body(`{"n":${n}}`)), "overflow", n)
    }
    for (const n of ["1.7976931348623157e308", "1e-400", "-0", `1${"0".repeat(300)}`, "12345678901234567890"]) {
      assert.isUndefined(refusal(body(`{"n":${n}}`)), n)
    }
  })

  it("judges payloads only, names the rule and never the input; json takes all of it", () => {
    assert.isUndefined(refusal(`{"version":"1","token":"\\ud800","extra":{"a":1,"a":2},"data":[{"id":1}]}`))
    const text = body(`{"secret-marker":1,"secret-marker":2}`)
    const parsed = parseText(text, 64, "i-json")
    assert.isTrue(parsed._tag === "Invalid" && !parsed.error.message.includes("secret-marker"))
    for (const element of [`{"a":1,"a":2}`, `{"s":"\\ud800"}`, `{"n":1e999}`]) {
      assert.strictEqual(parseText(body(element), 64, "json")._tag, "Collection", element)
    }
  })

  it("lets malformed JSON and shape errors keep their own answers", () => {
    assert.strictEqual(parseText(body(`{"a":1,"a":2`), 64, "i-json")._tag, "Invalid")
    const parsed = parseText(`{"version":"1","version":"2","token":"t","data":[{"a":1}]}`, 64, "i-json")
    assert.isTrue(parsed._tag === "Invalid" && parsed.error.reason === "invalid_shape")
  })
})

// --- a strict reference ---------------------------------------------------------------------

const hasLoneSurrogate = (s: string): boolean => {
  for (let k = 0; k < s.length; k++) {
    const unit = s.charCodeAt(k)
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = s.charCodeAt(k + 1)
      if (next >= 0xdc00 && next <= 0xdfff) k++
      else return true
    } else if (unit >= 0xdc00 && unit <= 0xdfff) {
      return true
    }
  }
  return false
}

/**
 * The first I-JSON rule a well-formed JSON text breaks, left to right, by plain recursive descent
 * over the decoded text: obviously correct, slow, and written without the validator's tricks.
 */
const reference = (text: string): Rule | undefined => {
  let i = 0
  let found: Rule | undefined
  const ws = () => {
    while (" \t\n\r".includes(text[i] ?? "x")) i++
  }
  const string = (): string => {
    const start = i++
    while (text[i] !== "\"") i += text[i] === "\\" ? (text[i + 1] === "u" ? 6 : 2) : 1
    i++
    return JSON.parse(text.slice(start, i)) as string
  }
  const value = (): void => {
    ws()
    const c = text[i]
    if (c === "{" || c === "[") {
      const names = new Set<string>()
      i++
      ws()
      if (text[i] === (c === "{" ? "}" : "]")) return void i++
      for (;;) {
        if (c === "{") {
          ws()
          const name = string()
          if (hasLoneSurrogate(name)) found ??= "surrogate"
          if (names.has(name)) found ??= "duplicate"
          names.add(name)
          ws()
          i++ // the colon
        }
        value()
        ws()
        if (text[i++] === ",") continue
        return
      }
    }
    if (c === "\"") {
      if (hasLoneSurrogate(string())) found ??= "surrogate"
      return
    }
    const token = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?|^true|^false|^null/.exec(text.slice(i))![0]
    if (/\d/.test(token) && !Number.isFinite(Number(token))) found ??= "overflow"
    i += token.length
  }
  value()
  return found
}

// --- generated payloads, compared with the reference -------------------------------------------

const names = FastCheck.constantFrom("a", "b", "id", "\\u0061", "\\ud800", "k\\\"", "\\ud83d\\ude00")
const strings = FastCheck.constantFrom("x", "\\ud800", "\\udc00", "\\ud83d\\ude00", "a\\ud800\\u0041", "é", "")
const numbers = FastCheck.constantFrom("0", "-1.5", "1e308", "1e309", "-2E+400", "1e-400", `9${"9".repeat(310)}`)
const leaf = FastCheck.oneof(strings.map((s) => `"${s}"`), numbers, FastCheck.constantFrom("true", "null"))

const { element } = FastCheck.letrec<{ element: string; member: string }>((tie) => ({
  element: FastCheck.oneof(
    { depthSize: "small", withCrossShrink: true },
    leaf,
    FastCheck.array(tie("element"), { maxLength: 3 }).map((items) => `[${items.join(",")}]`),
    FastCheck.array(tie("member"), { maxLength: 4 }).map((members) => `{${members.join(",")}}`)
  ),
  member: FastCheck.tuple(names, tie("element")).map(([name, value]) => `"${name}":${value}`)
}))

const payload = FastCheck.array(FastCheck.tuple(names, element), { maxLength: 4 }).map((members) =>
  `{${members.map(([name, value]) => `"${name}":${value}`).join(",")}}`
)

describe("I-JSON profile against a strict reference", () => {
  it.prop(
    "refuses exactly the collections whose payloads break a rule, naming the first one broken",
    [FastCheck.array(payload, { minLength: 1, maxLength: 3 })],
    ([payloads]) => {
      const expected = payloads.map(reference).find((rule) => rule !== undefined)
      assert.strictEqual(refusal(body(...payloads)), expected, payloads.join(","))
    },
    { fastCheck: { numRuns: 2000, seed: 20261203 } }
  )
})
