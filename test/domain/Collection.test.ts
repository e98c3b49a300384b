/**
 * Collection validation and NDJSON encoding: one line per payload that parses to
 * the payload sent, exact element text where the element sits on one line, 400 reasons split into
 * `invalid_json` and `invalid_shape`.
 */
import { assert, describe, it } from "@effect/vitest"
import { isDeepStrictEqual } from "node:util"
import type { Collection, CollectionError } from "../../src/domain/Collection.js"
import { parseBody, parseText } from "../support/collections.js"

const DEPTH = 64

/** The collection of a valid body and its payloads' lines, or a test failure naming the error instead. */
const collectionOf = (
  text: string,
  maxDepth: number = DEPTH
): Collection & { readonly lines: ReadonlyArray<string> } => {
  const parsed = parseText(text, maxDepth)
  if (parsed._tag === "Invalid") {
    throw new Error(`expected a collection, got ${parsed.error.reason}: ${parsed.error.message}`)
  }
  return { ...parsed.collection, lines: parsed.lines }
}

/** A collection as plain data: its payloads' spans as [start, end] pairs. */
const summaryOf = (collection: Collection & { readonly lines: ReadonlyArray<string> }) => ({
  version: collection.version,
  token: collection.token,
  spans: Array.from({ length: collection.payloads.count }, (_, k) => [
    collection.payloads.start(k),
    collection.payloads.end(k)
  ]),
  multiline: collection.multiline,
  lines: collection.lines
})

const linesOf = (text: string, maxDepth: number = DEPTH): ReadonlyArray<string> => collectionOf(text, maxDepth).lines

/** The error of an invalid body, or a test failure when it was accepted. */
const errorOf = (text: string, maxDepth: number = DEPTH): CollectionError => {
  const parsed = parseText(text, maxDepth)
  if (parsed._tag === "Collection") {
    throw new Error(`expected an error, got a collection of ${parsed.lines.length} lines`)
  }
  return parsed.error
}

const reasonOf = (text: string, maxDepth: number = DEPTH): CollectionError["reason"] => errorOf(text, maxDepth).reason

/** A collection with the given raw text between the brackets of `data`. */
const body = (data: string): string => `{"version":"1.4","token":"tok","data":[${data}]}`

const assertNoLineBreak = (line: string): void => {
  assert.notInclude(line, "\n")
  assert.notInclude(line, "\r")
}

describe("parseCollection: lines", () => {
  it("keeps each element's exact text and trims the whitespace around it", () => {
    const text = `{"version":"1.4","token":"tok","data":[  {"id":1, "a": [1,2]} ,\t{"id":2,"s":"x"}  ]}`
    const collection = collectionOf(text)
    assert.deepStrictEqual(summaryOf(collection), {
      version: "1.4",
      token: "tok",
      spans: [[41, 61], [64, 80]],
      multiline: false,
      lines: [`{"id":1, "a": [1,2]}`, `{"id":2,"s":"x"}`]
    })
    for (let k = 0; k < collection.lines.length; k++) {
      assert.strictEqual(text.slice(collection.payloads.start(k), collection.payloads.end(k)), collection.lines[k])
    }
  })

  it("keeps the exact text of one-line elements laid out one per line", () => {
    // The usual hand-written layout: the body spans lines, every element sits on one line.
    const text = `{\n  "version": "1.4",\n  "token": "tok",\n  "data": [\n` +
      `    {"id":1, "a": [1,2]},\n` +
      `    {"id":2, "n": 1e5}\n` +
      `  ]\n}\n`
    assert.deepStrictEqual(linesOf(text), [`{"id":1, "a": [1,2]}`, `{"id":2, "n": 1e5}`])
    const crlf = text.replace(/\n/g, "\r\n")
    assert.deepStrictEqual(linesOf(crlf), [`{"id":1, "a": [1,2]}`, `{"id":2, "n": 1e5}`])
  })

  it("re-serialises an element written over several lines to one line with the same value", () => {
    const element = `{\n  "id": 1,\n  "nested": {\n    "a": [\n      1,\n      2\n    ],\n    "s": "x y"\n  }\n}`
    for (const raw of [element, element.replace(/\n/g, "\r\n"), element.replace(/\n {2}/g, "\n\t")]) {
      const lines = linesOf(body(`${raw}, {"id":2}`))
      assert.strictEqual(lines.length, 2)
      for (const line of lines) assertNoLineBreak(line)
      assert.deepStrictEqual(JSON.parse(lines[0]!), { id: 1, nested: { a: [1, 2], s: "x y" } })
      assert.strictEqual(lines[1], `{"id":2}`)
    }
  })

  it("blanks a line break between a key and its colon, the one place outside a value it can sit", () => {
    for (const raw of [`{"id"\n:1}`, `{"id"\r\n  :\n1}`]) {
      const [line] = linesOf(body(raw))
      assert.isDefined(line)
      assertNoLineBreak(line)
      assert.deepStrictEqual(JSON.parse(line), { id: 1 })
    }
  })

  it("refuses a body that is not UTF-8 as invalid_json, and reads UTF-8 strings as sent", () => {
    // "café" in Latin-1: a lone 0xe9 byte.
    const before = Buffer.from(body(`{"s":"caf`).slice(0, -2))
    const latin1 = Buffer.concat([before, Buffer.from([0xe9]), Buffer.from(`"}]}`)])
    const parsed = parseBody(latin1, DEPTH)
    assert.deepStrictEqual(parsed._tag === "Invalid" ? parsed.error : undefined, {
      reason: "invalid_json",
      message: "invalid UTF-8"
    })
    const collection = collectionOf(`{"version":"v\u00e9","token":"t\u2603","data":[{"s":"caf\u00e9 \ud83d\ude00"}]}`)
    assert.deepStrictEqual([collection.version, collection.token], ["v\u00e9", "t\u2603"])
    assert.deepStrictEqual(collection.lines, [`{"s":"caf\u00e9 \ud83d\ude00"}`])
  })

  it("stores __proto__ and constructor keys as data, on both encoding paths", () => {
    const element = `{"__proto__": {"polluted": true}, "constructor": {"prototype": {"x": 1}}, "id": 7}`
    const multiline = element.replace(/, /g, ",\n  ")
    for (const raw of [element, multiline]) {
      const [line] = linesOf(body(raw))
      assert.isDefined(line)
      assert.include(line, `"__proto__"`)
      assert.include(line, `"constructor"`)
      const value: unknown = JSON.parse(line)
      assert.isTrue(typeof value === "object" && value !== null && Object.hasOwn(value, "__proto__"))
      assert.isTrue(typeof value === "object" && value !== null && Object.hasOwn(value, "constructor"))
      assert.isTrue(isDeepStrictEqual(value, JSON.parse(element)))
      assert.isUndefined(({} as Record<string, unknown>)["polluted"], "no prototype was polluted")
    }
    assert.strictEqual(linesOf(body(element))[0], element)
  })

  it("keeps an escaped lone surrogate as its six-character escape", () => {
    const element = `{"s":"\\ud800","t":"a\\udc00b"}`
    for (const raw of [element, element.replace(",", ",\n")]) {
      const [line] = linesOf(body(raw))
      assert.isDefined(line)
      assert.include(line, `"\\ud800"`)
      assert.include(line, `a\\udc00b`)
      const value = JSON.parse(line) as { s: string; t: string }
      assert.strictEqual(value.s.length, 1)
      assert.strictEqual(value.s.charCodeAt(0), 0xd800)
      assert.strictEqual(value.t.charCodeAt(1), 0xdc00)
    }
    assert.strictEqual(linesOf(body(element))[0], element)
  })

  it("is not confused by structural characters, quotes and backslashes inside strings", () => {
    const payloads = [
      { s: "}],{[:" },
      { s: "a\"b\\", t: "\\" },
      { "k}": "v]", "x,": ":", "[": "{" },
      { s: "\\\"],\"data\":[{\"id\":9}]" },
      { token: "\",\"token\":\"x", version: "}" },
      { s: "[[[[[[[[[[[[[[[[[[[[[[[[[[[[" },
      { s: "ends with a backslash \\" }
    ]
    const text = `{"version":"1,\\"]}{[","note":"\\"token\\":","token":"t\\\\","data":[${
      payloads.map((p) => JSON.stringify(p)).join(" , ")
    }],"after":"]}"}`
    // The string of brackets would exceed a depth of 4 if the scanner counted it.
    const collection = collectionOf(text, 4)
    assert.strictEqual(collection.version, "1,\"]}{[")
    assert.strictEqual(collection.token, "t\\")
    assert.deepStrictEqual(collection.lines, payloads.map((p) => JSON.stringify(p)))
  })

  it("does not depend on the order of the top-level keys", () => {
    const collection = collectionOf(`{"data":[{"id":1},{"id":2}],"token":"tok","version":"2"}`)
    assert.deepStrictEqual(summaryOf(collection), {
      version: "2",
      token: "tok",
      spans: [[9, 17], [18, 26]],
      multiline: false,
      lines: [`{"id":1}`, `{"id":2}`]
    })
    const middle = collectionOf(`{"token":"tok","data":[{"id":1}],"extra":[1,[2]],"version":"2"}`)
    assert.deepStrictEqual(middle.lines, [`{"id":1}`])
  })

  it("keeps numbers and literals as sent", () => {
    const element = `{"a":1e5,"b":-0.5,"c":true,"d":false,"e":null,"f":1E-7,"g":1.50,"h":-0,` +
      `"i":12345678901234567890,"j":[true,false,null,0]}`
    assert.deepStrictEqual(linesOf(body(element)), [element])
  })

  it("accepts an empty token and keeps every payload of a long collection in order", () => {
    const elements = Array.from({ length: 500 }, (_, i) => `{"id":${i}}`)
    const collection = collectionOf(`{"version":"1","token":"","data":[${elements.join(",")}]}`)
    assert.strictEqual(collection.token, "")
    assert.deepStrictEqual(collection.lines, elements)
  })
})

describe("parseCollection: duplicate keys", () => {
  for (const key of ["token", "version", "data"]) {
    it(`refuses a duplicated "${key}" key`, () => {
      const fields: Record<string, string> = { version: `"1"`, token: `"t"`, data: `[{"id":1}]` }
      const entries = Object.entries(fields).map(([k, v]) => `"${k}":${v}`)
      const text = `{${entries.join(",")},"${key}":${fields[key]}}`
      assert.strictEqual(reasonOf(text), "invalid_shape")
    })
  }

  it("refuses a duplicate spelled with a unicode escape", () => {
    assert.strictEqual(reasonOf(`{"version":"1","token":"a","tok\\u0065n":"b","data":[{}]}`), "invalid_shape")
    assert.strictEqual(reasonOf(`{"v\\u0065rsion":"1","version":"2","token":"a","data":[{}]}`), "invalid_shape")
    assert.strictEqual(reasonOf(`{"version":"1","token":"a","data":[{}],"\\u0064ata":[{}]}`), "invalid_shape")
  })

  it("does not count keys named token, version or data inside payloads or other fields", () => {
    const text = `{"version":"1","token":"t","meta":{"token":1,"token":2},` +
      `"data":[{"token":"x","version":"y","data":[]},{"token":"z","token":"w"}]}`
    assert.deepStrictEqual(linesOf(text), [`{"token":"x","version":"y","data":[]}`, `{"token":"z","token":"w"}`])
  })

  it("does not count a string value spelled like a key", () => {
    const lines = linesOf(`{"version":"token","token":"version","note":"data","data":[{"id":1}]}`)
    assert.deepStrictEqual(lines, [`{"id":1}`])
  })
})

describe("parseCollection: depth", () => {
  /** A payload of `levels` nested objects: the whole body is then `levels + 2` deep. */
  const nested = (levels: number): string => `${`{"a":`.repeat(levels - 1)}{}${"}".repeat(levels - 1)}`

  it("accepts exactly maxDepth and refuses maxDepth + 1 as invalid_json", () => {
    for (const maxDepth of [3, 10, 64]) {
      assert.deepStrictEqual(linesOf(body(nested(maxDepth - 2)), maxDepth), [nested(maxDepth - 2)])
      assert.strictEqual(reasonOf(body(nested(maxDepth - 1)), maxDepth), "invalid_json")
    }
  })

  it("counts arrays and nesting outside data too", () => {
    const arrays = `{"a":${"[".repeat(7)}${"]".repeat(7)}}` // payload depth 8
    assert.deepStrictEqual(linesOf(body(arrays), 10), [arrays])
    assert.strictEqual(reasonOf(body(arrays), 9), "invalid_json")
    const meta = (levels: number) =>
      `{"version":"1","token":"t","meta":${"[".repeat(levels)}${"]".repeat(levels)},"data":[{}]}`
    assert.strictEqual(linesOf(meta(9), 10).length, 1)
    assert.strictEqual(reasonOf(meta(10), 10), "invalid_json")
  })

  it("refuses 100000 nested brackets without throwing", () => {
    const deep = "[".repeat(100_000)
    assert.strictEqual(reasonOf(deep), "invalid_json")
    assert.strictEqual(reasonOf(`${deep}${"]".repeat(100_000)}`), "invalid_json")
    assert.strictEqual(reasonOf(body(`{"a":${deep}`)), "invalid_json")
    assert.strictEqual(reasonOf(`{"a":${"{\"a\":".repeat(100_000)}`), "invalid_json")
  })
})

describe("parseCollection: malformed JSON", () => {
  const cases: ReadonlyArray<readonly [string, string]> = [
    ["trailing comma in the object", `{"version":"1","token":"t","data":[{}],}`],
    ["trailing comma in data", `{"version":"1","token":"t","data":[{},]}`],
    ["trailing comma in a payload", `{"version":"1","token":"t","data":[{"a":1,}]}`],
    ["unterminated string", `{"version":"1`],
    ["unterminated string ending in a backslash", `{"version":"1\\`],
    ["missing value", `{"a":}`],
    ["missing closing brace", `{"version":"1","token":"t","data":[{}]`],
    ["empty string", ""],
    ["whitespace only", "  \n\t\r\n "],
    ["two objects", "{} {}"],
    ["a collection followed by more", `${body("{}")} {}`],
    ["single quotes", `{'version':'1'}`],
    ["raw newline inside a string", `{"version":"1\n","token":"t","data":[{}]}`],
    ["bad literal", `{"version":"1","token":"t","data":[{"a":tru}]}`]
  ]
  for (const [name, text] of cases) {
    it(`refuses ${name} as invalid_json`, () => {
      assert.strictEqual(reasonOf(text), "invalid_json")
    })
  }
})

describe("parseCollection: shape", () => {
  it("refuses a body that is not an object", () => {
    for (const text of [`[]`, `[${body("{}")}]`, `"text"`, `42`, `null`, `true`]) {
      assert.strictEqual(reasonOf(text), "invalid_shape", text)
    }
  })

  const cases: ReadonlyArray<readonly [string, string]> = [
    ["version missing", `{"token":"t","data":[{}]}`],
    ["version empty", `{"version":"","token":"t","data":[{}]}`],
    ["version a number", `{"version":1.4,"token":"t","data":[{}]}`],
    ["version null", `{"version":null,"token":"t","data":[{}]}`],
    ["token missing", `{"version":"1","data":[{}]}`],
    ["token a number", `{"version":"1","token":1,"data":[{}]}`],
    ["token null", `{"version":"1","token":null,"data":[{}]}`],
    ["data missing", `{"version":"1","token":"t"}`],
    ["data empty", `{"version":"1","token":"t","data":[]}`],
    ["data an object", `{"version":"1","token":"t","data":{"id":1}}`],
    ["data a string", `{"version":"1","token":"t","data":"[{}]"}`],
    ["data null", `{"version":"1","token":"t","data":null}`],
    ["a number in data", body(`{"id":1},1`)],
    ["a string in data", body(`"x",{"id":1}`)],
    ["null in data", body(`{"id":1},null`)],
    ["an array in data", body(`[{"id":1}]`)],
    ["only an array in data", body(`[]`)]
  ]
  for (const [name, text] of cases) {
    it(`refuses ${name} as invalid_shape`, () => {
      assert.strictEqual(reasonOf(text), "invalid_shape")
    })
  }

  it("gives a short message that does not echo the body", () => {
    const error = errorOf(`{"version":"1","token":"s3cr3t-token","data":[1]}`)
    assert.isAbove(error.message.length, 0)
    assert.notInclude(error.message, "s3cr3t-token")
  })
})

// ---------------------------------------------------------------------------------------------
// Property-style check over generated payloads.

/** mulberry32: a small deterministic PRNG. */
const prng = (seed: number) => {
  let state = seed >>> 0
  return (): number => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [key: string]: Json }

const ALPHABET = [
  "a", "b", "Z", "0", " ", "{", "}", "[", "]", ",", ":", "\"", "\\", "/", "\n", "\r", "\t", "\u0000",
  "\u001f", "\u2028", "\u2029", "é", "☃", "😀", "\ud800", "\udc00", "\\u0041", "\\\"", "true", "null"
]
const KEYS = ["id", "__proto__", "constructor", "token", "version", "data", "", "a b", "k\"}", "1", "x"]

const generator = (seed: number) => {
  const random = prng(seed)
  const int = (n: number) => Math.floor(random() * n)
  const pick = <A>(items: ReadonlyArray<A>): A => items[int(items.length)]!
  const string = (): string => Array.from({ length: int(8) }, () => pick(ALPHABET)).join("")
  const number = (): number => {
    switch (int(4)) {
      case 0:
        return int(2000) - 1000 || 1 // never -0: JSON.stringify writes it as 0
      case 1:
        return (random() - 0.5) * 1e6
      case 2:
        return random() * 1e-5 + 1e-9
      default:
        return pick([1e21, -1.5e300, 5e-324, Number.MAX_SAFE_INTEGER, 0.1])
    }
  }
  const object = (depth: number): { [key: string]: Json } => {
    const result: { [key: string]: Json } = {}
    const size = int(5)
    for (let i = 0; i < size; i++) {
      const key = random() < 0.6 ? pick(KEYS) : string()
      // defineProperty keeps "__proto__" an own data property, as JSON.parse makes it.
      Object.defineProperty(result, key, { value: value(depth + 1), enumerable: true, writable: true, configurable: true })
    }
    return result
  }
  const value = (depth: number): Json => {
    const kind = depth >= 5 ? int(4) : int(6)
    switch (kind) {
      case 0:
        return pick([null, true, false])
      case 1:
        return number()
      case 2:
      case 3:
        return string()
      case 4:
        return Array.from({ length: int(4) }, () => value(depth + 1))
      default:
        return object(depth)
    }
  }
  return { payload: () => object(0), string, int }
}

describe("parseCollection: generated payloads", () => {
  const gen = generator(0x5eed)
  const collections = Array.from({ length: 50 }, () => ({
    version: gen.string() || "1",
    token: gen.string(),
    data: Array.from({ length: 4 }, () => gen.payload())
  }))

  it("generates 200 payloads with the awkward keys and characters it should", () => {
    const text = JSON.stringify(collections)
    assert.strictEqual(collections.flatMap((c) => c.data).length, 200)
    for (const needle of [`"__proto__"`, `"constructor"`, `\\ud800`, `\\n`, `\\"`, `\u2028`, `😀`]) {
      assert.include(text, needle)
    }
  })

  for (const [layout, indent] of [["compact", undefined], ["pretty-printed", 2]] as const) {
    it(`encodes every ${layout} payload as one line that parses to it`, () => {
      for (const sent of collections) {
        const text = JSON.stringify(sent, null, indent)
        const collection = collectionOf(text)
        assert.strictEqual(collection.version, sent.version)
        assert.strictEqual(collection.token, sent.token)
        assert.strictEqual(collection.lines.length, sent.data.length)
        collection.lines.forEach((line, i) => {
          assertNoLineBreak(line)
          const payload = sent.data[i]
          assert.isTrue(isDeepStrictEqual(JSON.parse(line), payload), `payload ${i} of ${text}`)
          if (indent === undefined) assert.strictEqual(line, JSON.stringify(payload), "the exact text sent")
        })
      }
    })
  }
})
