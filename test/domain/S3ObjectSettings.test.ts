import { assert, describe, it } from "@effect/vitest"
import { StorageClass } from "@aws-sdk/client-s3"
import { parseObjectTags, STORAGE_CLASSES } from "../../src/domain/S3ObjectSettings.js"

const tagging = (text: string) => {
  const parsed = parseObjectTags(text)
  if ("error" in parsed) throw new Error(parsed.error)
  return parsed.tagging
}

const problem = (text: string) => {
  const parsed = parseObjectTags(text)
  if (!("error" in parsed)) throw new Error(`accepted: ${parsed.tagging}`)
  return parsed.error
}

describe("S3 object settings", () => {
  it("lists exactly the SDK's storage classes", () => {
    assert.deepStrictEqual([...STORAGE_CLASSES].sort(), Object.values(StorageClass).sort())
  })

  it("re-encodes tags one way, decoding what was URL-encoded or written with + for spaces", () => {
    assert.strictEqual(tagging("team=ingest&env=prod"), "team=ingest&env=prod")
    assert.strictEqual(tagging("env=e2e test&cost+center=a%2Fb"), "env=e2e%20test&cost%20center=a%2Fb")
    assert.strictEqual(tagging("flag"), "flag=", "a tag may have an empty value")
    assert.strictEqual(tagging(Array.from({ length: 10 }, (_, i) => `k${i}=v`).join("&")).split("&").length, 10)
  })

  it("refuses what S3 would refuse, saying why", () => {
    assert.match(problem(Array.from({ length: 11 }, (_, i) => `k${i}=v`).join("&")), /11 tags; S3 takes at most 10/)
    assert.match(problem("a=1&a=2"), /"a" is given twice/)
    assert.match(problem("=x"), /empty key/)
    assert.match(problem(`k=${"v".repeat(257)}`), /longer than 256/)
    assert.match(problem(`${"k".repeat(129)}=v`), /longer than 128/)
    assert.match(problem("k=%E0%A4%A"), /not URL-encoded/)
    assert.match(problem("k=a;b"), /character S3 does not allow/)
  })
})
