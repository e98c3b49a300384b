/**
 * Durable file writes for the embedded store and the dead-letter directory: write a temporary
 * file, fsync it, rename it into place, fsync the directory. A file that exists is complete and
 * durable, as an S3 200 is. Temporary files live under `DATA_DIR/.tmp` (same file system, so the
 * rename is atomic) and are cleared at start: no scan of the object tree is needed.
 */
import { randomBytes } from "node:crypto"
import type { PlatformError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { StoreError } from "../services/ObjectStore.js"

export interface DurableWriter {
  /** Writes `body` to `relative` under the root, atomically and durably. */
  readonly write: (relative: string, body: Uint8Array) => Effect.Effect<void, StoreError>
}

const toStoreError = (what: string) => (error: PlatformError): StoreError =>
  new StoreError({
    retryable: !(error._tag === "SystemError" && (error.reason === "PermissionDenied" || error.reason === "BadResource")),
    reason: `${what}: ${error.message}`
  })

/**
 * Directory fsyncs shared by concurrent writers (a group commit). A rename is durable once an
 * fsync of its directory that started after the rename has finished: a caller joins the next
 * sync of its directory to start, and one fiber in `scope` runs a directory's syncs back to back
 * while callers keep coming. Under load a directory is synced once per round instead of once per
 * object (each sync is three round trips to the libuv pool, which the intake measurably paid).
 */
export const makeSharedSync = <E>(sync: (dir: string) => Effect.Effect<void, E>, scope: Scope.Scope) => {
  // A directory is a key while its fiber runs; its array holds the callers of the next sync.
  const waiting = new Map<string, Array<Deferred.Deferred<void, E>>>()

  const runSyncs = (dir: string): Effect.Effect<void> =>
    Effect.suspend(() => {
      const callers = waiting.get(dir) ?? []
      if (callers.length === 0) {
        waiting.delete(dir)
        return Effect.void
      }
      waiting.set(dir, [])
      return Effect.exit(sync(dir)).pipe(
        Effect.flatMap((exit) => Effect.forEach(callers, (caller) => Deferred.done(caller, exit), { discard: true })),
        Effect.zipRight(runSyncs(dir))
      )
    })

  return (dir: string): Effect.Effect<void, E> =>
    Effect.gen(function*() {
      const caller = yield* Deferred.make<void, E>()
      const callers = waiting.get(dir)
      if (callers === undefined) {
        waiting.set(dir, [caller])
        yield* Effect.forkIn(runSyncs(dir), scope)
      } else {
        callers.push(caller)
      }
      return yield* Deferred.await(caller)
    })
}

/**
 * A writer rooted at `root`, with its temporary files in `tempDir` (see `prepareDirectories`);
 * its directory syncs run in `scope`.
 */
export const makeDurableWriter = (root: string, tempDir: string, scope: Scope.Scope) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const known = new Set<string>()

    const syncDirectory = (dir: string) =>
      Effect.scoped(Effect.flatMap(fs.open(dir, { flag: "r" }), (handle) => handle.sync))
    const syncAfterRename = makeSharedSync(syncDirectory, scope)

    // A new directory's own entry must reach its parent's disk record too.
    const ensureDirectory = (dir: string): Effect.Effect<void, PlatformError> =>
      Effect.suspend(() => {
        if (known.has(dir)) return Effect.void
        const parent = path.dirname(dir)
        return Effect.gen(function*() {
          if (dir !== root && parent !== dir) yield* ensureDirectory(parent)
          if (!(yield* fs.exists(dir))) {
            yield* fs.makeDirectory(dir, { recursive: true })
            yield* syncDirectory(parent)
          }
          known.add(dir)
        })
      })

    yield* Effect.mapError(ensureDirectory(root), toStoreError("cannot create directory"))

    const write = (relative: string, body: Uint8Array) => {
      const target = path.join(root, relative)
      const dir = path.dirname(target)
      const temp = path.join(tempDir, `${path.basename(target)}.${randomBytes(6).toString("hex")}`)
      const removeTemp = fs.remove(temp, { force: true }).pipe(Effect.ignore)
      return Effect.gen(function*() {
        yield* ensureDirectory(dir)
        yield* Effect.scoped(
          Effect.gen(function*() {
            const handle = yield* fs.open(temp, { flag: "w" })
            if (body.length > 0) yield* handle.writeAll(body)
            yield* handle.sync
          })
        )
        yield* fs.rename(temp, target)
        yield* syncAfterRename(dir)
      }).pipe(
        Effect.onError(() => removeTemp),
        Effect.mapError(toStoreError("write failed"))
      )
    }

    return { write } satisfies DurableWriter
  })
