/**
 * The embedded store and the dead-letter directory on the real file system:
 * `DATA_DIR/objects/{key}` and `DATA_DIR/dead-letter/{file name of the key}`, written through a
 * temporary file under `DATA_DIR/.tmp` that never outlives a write or a restart.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import { assert, describe, it } from "@effect/vitest"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { DataDirUnusable } from "../../src/domain/DataDirErrors.js"
import { DeadLetterDirLive, LocalObjectStoreLive } from "../../src/layers/LocalObjectStore.js"
import { testLayer } from "../../src/services/AppConfig.js"
import { DeadLetter, isStoreError, ObjectStore, type StoreError } from "../../src/services/ObjectStore.js"

const KEY = "payloads/2024/01/02/03/20240102T030405006Z-0a1b2c3d-00000007.ndjson"
const FILE_NAME = "20240102T030405006Z-0a1b2c3d-00000007.ndjson"

/** A fresh DATA_DIR for one test, removed with the test's scope. */
const tempDataDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "local-store-test-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const platform = (dataDir: string) => Layer.mergeAll(testLayer({ dataDir }), NodeFileSystem.layer, NodePath.layer)

const buildStore = (dataDir: string) =>
  Effect.map(Layer.build(Layer.provide(LocalObjectStoreLive, platform(dataDir))), Context.get(ObjectStore))

const buildDeadLetter = (dataDir: string) =>
  Effect.map(Layer.build(Layer.provide(DeadLetterDirLive, platform(dataDir))), Context.get(DeadLetter))

/** Every byte value, some UTF-8 and a trailing newline: a body no text encoding would keep by accident. */
const bytes = (tag: string): Uint8Array =>
  Buffer.concat([
    Buffer.from(`{"id":"${tag}","note":"héllo ☃"}\n`, "utf8"),
    Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
    Buffer.from("\n")
  ])

/** Every file under `dir`, as paths relative to it. */
const filesUnder = (dir: string): Array<string> =>
  existsSync(dir)
    ? readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((entry) => entry.isFile())
      .map((entry) => join(entry.parentPath, entry.name).slice(dir.length + 1))
      .sort()
    : []

/** The StoreError of a failed exit; a success or a defect fails the test. */
const storeErrorOf = <A>(exit: Exit.Exit<A, StoreError>): StoreError => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure, it succeeded")
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) throw new Error(`expected a StoreError, got ${Cause.pretty(exit.cause)}`)
  assert.isTrue(isStoreError(failure.value))
  assert.isString(failure.value.reason)
  return failure.value
}

/** The DataDirUnusable of a start that failed; a success or anything else fails the test. */
const unusableOf = <A, E>(exit: Exit.Exit<A, E>): DataDirUnusable => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure, it succeeded")
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure) || !(failure.value instanceof DataDirUnusable)) {
    throw new Error(`expected DataDirUnusable, got ${Cause.pretty(exit.cause)}`)
  }
  return failure.value
}

describe("LocalObjectStoreLive", () => {
  it.scopedLive("writes DATA_DIR/objects/{key} with the exact bytes, creating nested directories", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDataDir
      const store = yield* buildStore(dataDir)
      const body = bytes("a")
      yield* store.put(KEY, body)
      const target = join(dataDir, "objects", KEY)
      assert.isTrue(statSync(join(dataDir, "objects", "payloads", "2024", "01", "02", "03")).isDirectory())
      assert.deepStrictEqual(readFileSync(target), Buffer.from(body))
      yield* store.put("top-level.ndjson", bytes("b"))
      assert.deepStrictEqual(readFileSync(join(dataDir, "objects", "top-level.ndjson")), Buffer.from(bytes("b")))
      assert.deepStrictEqual(filesUnder(join(dataDir, "objects")), [KEY, "top-level.ndjson"].sort())
    }))

  it.scopedLive("writes an empty body as an empty file, as S3 stores an empty object", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDataDir
      const store = yield* buildStore(dataDir)
      yield* store.put("empty.ndjson", new Uint8Array(0))
      assert.strictEqual(readFileSync(join(dataDir, "objects", "empty.ndjson")).length, 0)
      assert.deepStrictEqual(readdirSync(join(dataDir, ".tmp", "objects")), [])
    }))

  it.scopedLive("a second put of the same key replaces the file: one file, the bytes of the last put", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDataDir
      const store = yield* buildStore(dataDir)
      const body = bytes("same")
      yield* store.put(KEY, body)
      yield* store.put(KEY, body)
      assert.deepStrictEqual(filesUnder(join(dataDir, "objects")), [KEY])
      assert.deepStrictEqual(readFileSync(join(dataDir, "objects", KEY)), Buffer.from(body))
      // Overwritten, not appended to: a shorter body leaves nothing of the longer one behind.
      const shorter = Buffer.from("{\"id\":1}\n")
      yield* store.put(KEY, shorter)
      assert.deepStrictEqual(readFileSync(join(dataDir, "objects", KEY)), shorter)
      assert.deepStrictEqual(filesUnder(join(dataDir, "objects")), [KEY])
    }))

  it.scopedLive("leaves no temporary file behind after successful puts, concurrent ones included", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDataDir
      const store = yield* buildStore(dataDir)
      const keys = Array.from({ length: 20 }, (_, i) => `payloads/2024/01/0${1 + (i % 3)}/00/object-${i}.ndjson`)
      yield* Effect.forEach(keys, (key) => store.put(key, bytes(key)), { concurrency: "unbounded" })
      assert.isTrue(statSync(join(dataDir, ".tmp", "objects")).isDirectory())
      assert.deepStrictEqual(readdirSync(join(dataDir, ".tmp", "objects")), [])
      assert.deepStrictEqual(filesUnder(join(dataDir, "objects")), [...keys].sort())
      for (const key of keys) {
        assert.deepStrictEqual(readFileSync(join(dataDir, "objects", key)), Buffer.from(bytes(key)))
      }
    }))

  it.scopedLive("removes temporary files left by an earlier run at start, and keeps stored objects", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDataDir
      const tempDir = join(dataDir, ".tmp", "objects")
      mkdirSync(join(tempDir, "nested"), { recursive: true })
      writeFileSync(join(tempDir, `${FILE_NAME}.3f2a1b0c9d8e`), "half a bat")
      writeFileSync(join(tempDir, "nested", "other"), "x")
      mkdirSync(join(dataDir, "objects", "payloads"), { recursive: true })
      writeFileSync(join(dataDir, "objects", "payloads", "kept.ndjson"), "{\"id\":1}\n")
      const store = yield* buildStore(dataDir)
      assert.deepStrictEqual(readdirSync(tempDir), [])
      assert.strictEqual(readFileSync(join(dataDir, "objects", "payloads", "kept.ndjson"), "utf8"), "{\"id\":1}\n")
      yield* store.put(KEY, bytes("after restart"))
      assert.deepStrictEqual(readdirSync(tempDir), [])
    }))

  it.scopedLive("a put interrupted mid-write goes no further than its temporary file, and removes it", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDataDir
      const store = yield* buildStore(dataDir)
      const tempDir = join(dataDir, ".tmp", "objects")
      const body = Buffer.alloc(64 * 1024 * 1024, 0x78)
      const waitFor = (done: () => boolean) =>
        Effect.gen(function*() {
          for (let polls = 0; !done() && polls < 2_000; polls++) yield* Effect.sleep(Duration.millis(1))
        })
      // Interrupted once its temporary file exists, while the 64 MB are being written; a put that
      // finished before that (a very fast disk) is tried again under another key.
      let key: string | undefined
      for (let attempt = 0; attempt < 5 && key === undefined; attempt++) {
        const candidate = `payloads/interrupted-${attempt}.ndjson`
        const put = yield* Effect.fork(store.put(candidate, body))
        yield* waitFor(() => readdirSync(tempDir).length > 0 || put.unsafePoll() !== null)
        if (put.unsafePoll() === null) {
          yield* Fiber.interrupt(put)
          key = candidate
        }
      }
      if (key === undefined) throw new Error("every put finished before it could be interrupted")
      // Its file calls run on below the interruption, until they have closed and removed the file.
      yield* waitFor(() => readdirSync(tempDir).length === 0)
      assert.deepStrictEqual(readdirSync(tempDir), [], "the temporary file is removed")
      assert.isFalse(existsSync(join(dataDir, "objects", key)), "and never renamed into place")
    }))

  it.scopedLive("refuses to start, naming the path, when the objects directory is a regular file", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDataDir
      writeFileSync(join(dataDir, "objects"), "not a directory")
      const error = unusableOf(yield* Effect.exit(buildStore(dataDir)))
      assert.strictEqual(error.problem, `${join(dataDir, "objects")} is not a directory`)
      assert.strictEqual(readFileSync(join(dataDir, "objects"), "utf8"), "not a directory")
      assert.deepStrictEqual(filesUnder(join(dataDir, ".tmp")), [])
    }))

  it.scopedLive("fails with a StoreError when the key's path is taken by a directory, leaving no temp file", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDataDir
      const store = yield* buildStore(dataDir)
      mkdirSync(join(dataDir, "objects", "payloads", "taken.ndjson", "inside"), { recursive: true })
      storeErrorOf(yield* Effect.exit(store.put("payloads/taken.ndjson", bytes("x"))))
      assert.deepStrictEqual(readdirSync(join(dataDir, ".tmp", "objects")), [])
      // A parent segment that is a file fails too.
      writeFileSync(join(dataDir, "objects", "payloads", "file"), "x")
      storeErrorOf(yield* Effect.exit(store.put("payloads/file/below.ndjson", bytes("y"))))
      assert.deepStrictEqual(readdirSync(join(dataDir, ".tmp", "objects")), [])
      // The store still works for other keys.
      yield* store.put(KEY, bytes("ok"))
      assert.deepStrictEqual(readFileSync(join(dataDir, "objects", KEY)), Buffer.from(bytes("ok")))
    }))

  it.scopedLive("refuses to start, not a defect, when DATA_DIR itself is a regular file", () =>
    Effect.gen(function*() {
      const parent = yield* tempDataDir
      const dataDir = join(parent, "data")
      writeFileSync(dataDir, "not a directory")
      const error = unusableOf(yield* Effect.exit(buildStore(dataDir)))
      assert.strictEqual(error.problem, `${dataDir} is not a directory`)
      assert.strictEqual(readFileSync(dataDir, "utf8"), "not a directory")
    }))

  it.scopedLive("its check passes on a writable directory and fails once the directory is gone", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDataDir
      const store = yield* buildStore(dataDir)
      yield* store.check
      rmSync(join(dataDir, "objects"), { recursive: true })
      const error = storeErrorOf(yield* Effect.exit(store.check))
      assert.strictEqual(error.code, "ENOENT")
    }))
})

describe("DeadLetterDirLive", () => {
  it.scopedLive("writes DATA_DIR/dead-letter/{key below the prefix} with the exact bytes", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDataDir
      const deadLetter = yield* buildDeadLetter(dataDir)
      const body = bytes("dead")
      yield* deadLetter.write(KEY, body)
      const below = KEY.slice("payloads/".length)
      assert.deepStrictEqual(filesUnder(join(dataDir, "dead-letter")), [below])
      assert.deepStrictEqual(readFileSync(join(dataDir, "dead-letter", below)), Buffer.from(body))
      const other = `version=1.4/2024/01/02/03/${FILE_NAME.replace("07.", "08.")}`
      yield* deadLetter.write(`payloads/${other}`, body)
      assert.deepStrictEqual(filesUnder(join(dataDir, "dead-letter")), [below, other].sort())
      assert.deepStrictEqual(readdirSync(join(dataDir, ".tmp", "dead-letter")), [])
      assert.isFalse(existsSync(join(dataDir, "objects")), "the dead-letter directory is not the object store")
    }))

  it.scopedLive("removes its own leftover temporary files at start", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDataDir
      const tempDir = join(dataDir, ".tmp", "dead-letter")
      mkdirSync(tempDir, { recursive: true })
      writeFileSync(join(tempDir, `${FILE_NAME}.0123456789ab`), "partial")
      yield* buildDeadLetter(dataDir)
      assert.deepStrictEqual(readdirSync(tempDir), [])
    }))

  it.scopedLive("refuses to start, naming the path, when the dead-letter directory is a regular file", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDataDir
      writeFileSync(join(dataDir, "dead-letter"), "not a directory")
      const error = unusableOf(yield* Effect.exit(buildDeadLetter(dataDir)))
      assert.strictEqual(error.problem, `${join(dataDir, "dead-letter")} is not a directory`)
      assert.deepStrictEqual(filesUnder(join(dataDir, ".tmp")), [])
    }))
})
