/**
 * Object keys: `{prefix}/{yyyy}/{mm}/{dd}/{hh}/{yyyymmddTHHMMSSmmmZ}-{instance}-{seq}.ndjson[.gz]`
 * in UTC, and the key `replay` rebuilds from a dead-letter file's path.
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import { keyFileName, keyOfDeadLetter, normalisePrefix, objectKey } from "../../src/domain/Keys.js"
import { DEFAULT_PARTITIONS, partitionPath } from "../../src/domain/Partitions.js"

/** The default partitions of a batch created at `millis`: `yyyy/mm/dd/hh`. */
const hourly = (millis: number) => partitionPath(DEFAULT_PARTITIONS, millis, "")

const savedTz = process.env.TZ
afterEach(() => {
  if (savedTz === undefined) delete process.env.TZ
  else process.env.TZ = savedTz
})

describe("objectKey", () => {
  it("formats the key with zero-padded date parts, milliseconds and sequence", () => {
    assert.strictEqual(
      objectKey("payloads", hourly(Date.UTC(2024, 0, 2, 3, 4, 5, 6)), Date.UTC(2024, 0, 2, 3, 4, 5, 6), "0a1b2c3d", 7, ".ndjson"),
      "payloads/2024/01/02/03/20240102T030405006Z-0a1b2c3d-00000007.ndjson"
    )
    assert.strictEqual(
      objectKey("payloads", hourly(Date.UTC(2025, 10, 28, 13, 59, 58, 50)), Date.UTC(2025, 10, 28, 13, 59, 58, 50), "ffffffff", 0, ".ndjson"),
      "payloads/2025/11/28/13/20251128T135958050Z-ffffffff-00000000.ndjson"
    )
    assert.strictEqual(
      objectKey("payloads", hourly(Date.UTC(1999, 11, 31, 23, 0, 0, 999)), Date.UTC(1999, 11, 31, 23, 0, 0, 999), "12345678", 99_999_999, ".ndjson"),
      "payloads/1999/12/31/23/19991231T230000999Z-12345678-99999999.ndjson"
    )
  })

  it("uses UTC whatever the local time zone", () => {
    const millis = Date.UTC(2023, 11, 31, 23, 30, 15, 120) // 18:30 on Dec 31 in New York, 08:30 on Jan 1 in Tokyo
    const expected = "p/2023/12/31/23/20231231T233015120Z-abcdef01-00000042.ndjson"
    for (const tz of ["America/New_York", "Asia/Tokyo", "UTC"]) {
      process.env.TZ = tz
      assert.strictEqual(objectKey("p", hourly(millis), millis, "abcdef01", 42, ".ndjson"), expected, tz)
    }
  })

  it("starts at the year when the prefix is empty", () => {
    assert.strictEqual(
      objectKey("", hourly(Date.UTC(2024, 1, 29, 0, 0, 0, 0)), Date.UTC(2024, 1, 29, 0, 0, 0, 0), "0a1b2c3d", 1, ".ndjson"),
      "2024/02/29/00/20240229T000000000Z-0a1b2c3d-00000001.ndjson"
    )
  })

  it("keeps a nested prefix as a path", () => {
    assert.strictEqual(
      objectKey("ingest/eu-west/raw", hourly(Date.UTC(2024, 6, 4, 9, 8, 7, 65)), Date.UTC(2024, 6, 4, 9, 8, 7, 65), "0a1b2c3d", 123, ".ndjson"),
      "ingest/eu-west/raw/2024/07/04/09/20240704T090807065Z-0a1b2c3d-00000123.ndjson"
    )
  })
})

describe("keyFileName", () => {
  it("is the last path segment of the key", () => {
    const key = "payloads/2024/01/02/03/20240102T030405006Z-0a1b2c3d-00000007.ndjson"
    assert.strictEqual(keyFileName(key), "20240102T030405006Z-0a1b2c3d-00000007.ndjson")
    assert.strictEqual(keyFileName("a/b/c/d/e/f/name.ndjson"), "name.ndjson")
    assert.strictEqual(keyFileName("name.ndjson"), "name.ndjson")
  })
})

describe("keyOfDeadLetter", () => {
  it("rebuilds a key from its path below the prefix, gzipped or not", () => {
    const path = "2024/01/02/03/20240102T030405006Z-0a1b2c3d-00000007.ndjson.gz"
    assert.strictEqual(keyOfDeadLetter("payloads", path), `payloads/${path}`)
    assert.strictEqual(keyOfDeadLetter("", path), path)
    const hive = "version=1.4/dt=2024-01-02/hour=03/20240102T030405006Z-0a1b2c3d-00000007.ndjson"
    assert.strictEqual(keyOfDeadLetter("a/b", hive), `a/b/${hive}`)
    for (const bad of ["../x/20240102T030405006Z-0a1b2c3d-00000007.ndjson", "a b/20240102T030405006Z-0a1b2c3d-00000007.ndjson"]) {
      assert.isUndefined(keyOfDeadLetter("payloads", bad), bad)
    }
  })

  const times = [
    Date.UTC(2024, 0, 2, 3, 4, 5, 6),
    Date.UTC(1999, 11, 31, 23, 59, 59, 999),
    Date.UTC(2030, 5, 15, 12, 0, 0, 0)
  ]

  it("rebuilds the key from its file name, with a prefix, a nested prefix or none", () => {
    for (const prefix of ["payloads", "", "a/b/c"]) {
      times.forEach((millis, i) => {
        const key = objectKey(prefix, hourly(millis), millis, "9f8e7d6c", i * 1000 + 1, ".ndjson")
        assert.strictEqual(keyOfDeadLetter(prefix, keyFileName(key)), key)
      })
    }
  })

  it("rejects bare file names that no key produces", () => {
    const good = "20240102T030405006Z-0a1b2c3d-00000007.ndjson"
    assert.strictEqual(keyOfDeadLetter("payloads", good), `payloads/2024/01/02/03/${good}`)
    const foreign = [
      "../x",
      "foo.ndjson",
      "",
      ".ndjson",
      "20240102T030405006Z-0a1b2c3-00000007.ndjson", // 7 hex chars
      "20240102T030405006Z-0a1b2c3d9-00000007.ndjson", // 9 hex chars
      "20240102T030405006Z-0A1B2C3D-00000007.ndjson", // upper-case hex
      "20240102T030405006Z-0a1b2c3g-00000007.ndjson", // not hex
      "20240102T030405006Z-0a1b2c3d-0000007.ndjson", // 7-digit sequence
      "20240102T030405006Z-0a1b2c3d-00000007.json",
      "20240102T030405006Z-0a1b2c3d-00000007.ndjson.tmp",
      `${good}.3f2a1b0c9d8e`, // a temporary file of the writer
      "20240102T03040506Z-0a1b2c3d-00000007.ndjson", // 2-digit milliseconds
      "20240102T030405006-0a1b2c3d-00000007.ndjson", // no Z
      `x${good}`,
      `../${good}`
    ]
    for (const name of foreign) assert.isUndefined(keyOfDeadLetter("payloads", name), name)
  })
})

describe("normalisePrefix", () => {
  it("removes leading and trailing slashes and keeps inner ones", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      ["payloads", "payloads"],
      ["/payloads", "payloads"],
      ["payloads/", "payloads"],
      ["//payloads//", "payloads"],
      ["/a/b/c/", "a/b/c"],
      ["a/b", "a/b"],
      ["/", ""],
      ["///", ""],
      ["", ""]
    ]
    for (const [given, expected] of cases) assert.strictEqual(normalisePrefix(given), expected, given)
  })
})
