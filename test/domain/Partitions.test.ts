/**
 * KEY_PARTITIONS: the template's grammar, what fills it in, and which versions may reach a key.
 */
import { assert, describe, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import {
  DEFAULT_PARTITIONS,
  DEFAULT_TEMPLATE,
  INVALID,
  partitionPath,
  type PartitionTemplate,
  parseTemplate,
  versionValue
} from "../../src/domain/Partitions.js"

const template = (text: string): PartitionTemplate => {
  const parsed = parseTemplate(text)
  if ("error" in parsed) throw new Error(parsed.error)
  return parsed
}

const problem = (text: string): string => {
  const parsed = parseTemplate(text)
  if (!("error" in parsed)) throw new Error(`accepted ${text}`)
  return parsed.error
}

const at = Date.UTC(2026, 11, 3, 7, 5, 9, 42)

describe("KEY_PARTITIONS", () => {
  it("the default is hourly directories", () => {
    assert.deepStrictEqual(parseTemplate(DEFAULT_TEMPLATE), DEFAULT_PARTITIONS)
    assert.strictEqual(partitionPath(DEFAULT_PARTITIONS, at, ""), "2026/12/03/07")
    assert.isFalse(DEFAULT_PARTITIONS.byVersion)
  })

  it("fills placeholders in UTC, inside segments too (Hive style)", () => {
    const hive = template("version={version}/dt={yyyy}-{mm}-{dd}/hour={hh}")
    assert.isTrue(hive.byVersion)
    assert.strictEqual(partitionPath(hive, at, "1.4"), "version=1.4/dt=2026-12-03/hour=07")
    const zone = process.env.TZ
    process.env.TZ = "Asia/Tokyo"
    try {
      assert.strictEqual(new Date(at).getHours(), 16, "the local zone is not UTC")
      assert.strictEqual(partitionPath(hive, at, "1.4"), "version=1.4/dt=2026-12-03/hour=07")
    } finally {
      if (zone === undefined) delete process.env.TZ
      else process.env.TZ = zone
    }
  })

  it("refuses unknown placeholders, empty or dot segments, a leading slash and other characters", () => {
    assert.match(problem("{yyyy}/{minute}"), /unknown placeholder \{minute\}/)
    assert.match(problem("{yyyy}//{mm}"), /empty segment/)
    assert.match(problem("{yyyy}/"), /empty segment/)
    assert.match(problem("/{yyyy}"), /must not start with \//)
    assert.match(problem("a/../b"), /"\.\." segment/)
    assert.match(problem("./{hh}"), /"\." segment/)
    assert.match(problem("v {version}"), /other than A-Z a-z 0-9 = \. _ -/)
    assert.match(problem("{version"), /other than/)
    assert.match(problem(""), /is empty/)
  })

  it("refuses a template whose directory names or path could outgrow what stores take", () => {
    assert.strictEqual(template("{version}{version}{version}").text, "{version}{version}{version}", "192 characters")
    assert.match(problem("{version}{version}{version}{version}"), /segment that can reach 256 characters \(at most 255\)/)
    const deep = Array.from({ length: 9 }, () => "{version}").join("/")
    assert.match(problem(deep), /can reach 584 characters \(at most 512\)/)
  })

  it("lets a version into a key only when it is safe there", () => {
    for (const safe of ["1", "1.4", "v2_beta-3", "A".repeat(64)]) assert.strictEqual(versionValue(safe), safe)
    for (const unsafe of ["", ".hidden", "-x", "a/b", "..", "a b", "é", "A".repeat(65), "1.4\n"]) {
      assert.strictEqual(versionValue(unsafe), INVALID, JSON.stringify(unsafe))
    }
  })

  it.prop("no version makes a path leave its partition: every segment stays a plain name", [FastCheck.string()], ([v]) => {
    const path = partitionPath(template("version={version}/{hh}"), at, versionValue(v))
    const segments = path.split("/")
    assert.strictEqual(segments.length, 2)
    for (const segment of segments) {
      assert.match(segment, /^[A-Za-z0-9=._-]+$/)
      assert.notInclude(["", ".", ".."], segment)
    }
  })
})
