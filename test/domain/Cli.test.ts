/**
 * Command-line parsing: a command, then `--kebab-case` flags naming a setting,
 * `--max-workers 8` or `--max-workers=8`.
 */
import { assert, describe, it } from "@effect/vitest"
import { type CliRequest, flagToVariable, type KnownSettings, parseArgs, variableToFlag } from "../../src/domain/Cli.js"
import { knownSettings, settingDocs } from "../../src/services/AppConfig.js"

const known: KnownSettings = {
  variables: new Set(["MAX_WORKERS", "S3_FORCE_PATH_STYLE", "S3_PREFIX", "PORT", "DATA_DIR"]),
  booleans: new Set(["S3_FORCE_PATH_STYLE"])
}

const parse = (...argv: ReadonlyArray<string>): CliRequest => parseArgs(argv, known)

/** The flags of a Run request as a plain object, or a test failure naming what came instead. */
const flagsOf = (...argv: ReadonlyArray<string>): Record<string, string> => {
  const request = parse(...argv)
  if (request._tag !== "Run") throw new Error(`expected Run, got ${JSON.stringify(request)}`)
  return Object.fromEntries(request.flags)
}

/** The message of an Invalid request, or a test failure naming what came instead. */
const invalidMessage = (...argv: ReadonlyArray<string>): string => {
  const request = parse(...argv)
  if (request._tag !== "Invalid") throw new Error(`expected Invalid, got ${request._tag}`)
  return request.message
}

describe("parseArgs: commands", () => {
  it("runs service and replay without flags", () => {
    const service = parse("service")
    assert.strictEqual(service._tag, "Run")
    if (service._tag === "Run") {
      assert.strictEqual(service.command, "service")
      assert.strictEqual(service.flags.size, 0)
    }
    const replay = parse("replay")
    assert.isTrue(replay._tag === "Run" && replay.command === "replay")
  })

  it("answers Version to --version and version, before anything else is checked", () => {
    for (const argv of [["--version"], ["version"], ["service", "--version"], ["replay", "--bogus", "--version"]]) {
      assert.deepStrictEqual(parse(...argv), { _tag: "Version" }, argv.join(" "))
    }
  })

  it("answers Help to --help, -h, help and no arguments", () => {
    for (const argv of [["--help"], ["-h"], [], ["help"], ["service", "--help"], ["service", "-h"]]) {
      assert.deepStrictEqual(parse(...argv), { _tag: "Help" }, argv.join(" "))
    }
  })

  it("refuses an unknown command, naming it", () => {
    for (const command of ["serve", "SERVICE", "--max-workers", "8"]) {
      assert.include(invalidMessage(command), command)
    }
  })
})

describe("parseArgs: flags", () => {
  it("reads a value from the next argument or after =", () => {
    assert.deepStrictEqual(flagsOf("service", "--max-workers", "8"), { MAX_WORKERS: "8" })
    assert.deepStrictEqual(flagsOf("service", "--max-workers=8"), { MAX_WORKERS: "8" })
    assert.deepStrictEqual(flagsOf("replay", "--data-dir", "/var/lib/ingest"), { DATA_DIR: "/var/lib/ingest" })
  })

  it("reads several flags in both spellings", () => {
    assert.deepStrictEqual(flagsOf("service", "--port=9000", "--max-workers", "4", "--s3-prefix", "a/b"), {
      PORT: "9000",
      MAX_WORKERS: "4",
      S3_PREFIX: "a/b"
    })
  })

  it("refuses a flag without a value unless its setting is yes/no, naming the flag", () => {
    for (const argv of [["service", "--max-workers"], ["service", "--max-workers", "--port", "1"]]) {
      const message = invalidMessage(...argv)
      assert.include(message, "--max-workers needs a value")
      assert.notInclude(message, "true")
    }
  })

  it("reads a yes/no flag without a value as true", () => {
    assert.deepStrictEqual(flagsOf("service", "--s3-force-path-style"), { S3_FORCE_PATH_STYLE: "true" })
    assert.deepStrictEqual(flagsOf("service", "--s3-force-path-style", "--max-workers", "8"), {
      S3_FORCE_PATH_STYLE: "true",
      MAX_WORKERS: "8"
    })
  })

  it("keeps an empty value after = and everything after the first =", () => {
    assert.deepStrictEqual(flagsOf("service", "--s3-prefix="), { S3_PREFIX: "" })
    assert.deepStrictEqual(flagsOf("service", "--s3-prefix=a=b"), { S3_PREFIX: "a=b" })
  })

  it("takes a value that starts with a single dash", () => {
    assert.deepStrictEqual(flagsOf("service", "--port", "-1"), { PORT: "-1" })
  })

  it("refuses an unknown option, naming it", () => {
    assert.include(invalidMessage("service", "--bogus", "1"), "--bogus")
    assert.include(invalidMessage("service", "--bogus=1"), "--bogus")
    assert.include(invalidMessage("service", "--max-workers", "8", "--no-such-thing"), "--no-such-thing")
  })

  it("refuses a stray positional argument, naming it", () => {
    assert.include(invalidMessage("service", "extra"), "extra")
    assert.include(invalidMessage("service", "--max-workers", "8", "9"), "9")
    assert.include(invalidMessage("service", "-x"), "-x")
  })
})

describe("flag and variable names", () => {
  it("maps kebab-case flags to CONSTANT_CASE variables and back", () => {
    assert.strictEqual(flagToVariable("max-workers"), "MAX_WORKERS")
    assert.strictEqual(flagToVariable("s3-force-path-style"), "S3_FORCE_PATH_STYLE")
    assert.strictEqual(flagToVariable("port"), "PORT")
    assert.strictEqual(variableToFlag("MAX_WORKERS"), "--max-workers")
    assert.strictEqual(variableToFlag("S3_FORCE_PATH_STYLE"), "--s3-force-path-style")
    assert.strictEqual(variableToFlag("PORT"), "--port")
  })

  it("round-trips every setting of the table", () => {
    assert.isAbove(settingDocs.length, 20)
    for (const { variable } of settingDocs) {
      const flag = variableToFlag(variable)
      assert.match(flag, /^--[a-z0-9]+(-[a-z0-9]+)*$/)
      assert.strictEqual(flagToVariable(flag.slice(2)), variable)
      const request = parseArgs(["service", `${flag}=v`], knownSettings)
      assert.isTrue(request._tag === "Run" && request.flags.get(variable) === "v", variable)
    }
  })
})
