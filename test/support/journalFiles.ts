/**
 * The journal's file system in memory, shared across "restarts" of a queue built over it, with
 * faults on demand: a call of a given kind fails with a given code (ENOSPC on write, EIO on
 * fdatasync, EROFS on open) until healed, or a number of times.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { JournalFiles, type JournalFilesShape, JournalIoError } from "../../src/services/journal/JournalFiles.js"

export type FileOp = "write" | "fdatasync" | "ftruncate" | "open" | "fsync" | "read"

export const makeMemoryFiles = (initial?: ReadonlyMap<string, Buffer>) => {
  const files = new Map<string, Buffer>([...(initial ?? [])].map(([path, data]) => [path, Buffer.from(data)]))
  const fds = new Map<number, string>()
  let nextFd = 3
  const faults = new Map<FileOp, { code: string; times: number }>()
  const calls: Array<FileOp> = []

  const check = (op: FileOp, path: string): Effect.Effect<void, JournalIoError> =>
    Effect.suspend(() => {
      calls.push(op)
      const fault = faults.get(op)
      if (fault === undefined) return Effect.void
      if (--fault.times <= 0) faults.delete(op)
      return Effect.fail(new JournalIoError({ op, path, code: fault.code, cause: new Error(fault.code) }))
    })

  const pathOf = (fd: number) => fds.get(fd) ?? "closed"
  const inDir = (dir: string) => [...files.keys()].filter((p) => p.startsWith(`${dir}/`) && !p.slice(dir.length + 1).includes("/"))

  const shape: JournalFilesShape = {
    mkdir: () => Effect.void,
    list: (dir) => Effect.sync(() => inDir(dir).map((p) => p.slice(dir.length + 1))),
    read: (path) =>
      check("read", path).pipe(Effect.zipRight(Effect.suspend(() => {
        const data = files.get(path)
        return data === undefined
          ? Effect.fail(new JournalIoError({ op: "read", path, code: "ENOENT", cause: undefined }))
          : Effect.succeed(Buffer.from(data))
      }))),
    create: (path) =>
      check("open", path).pipe(Effect.zipRight(Effect.suspend(() => {
        files.set(path, Buffer.alloc(0))
        const fd = nextFd++
        fds.set(fd, path)
        return Effect.succeed(fd)
      }))),
    writeAt: (fd, data, length, position) =>
      check("write", pathOf(fd)).pipe(Effect.zipRight(Effect.sync(() => {
        const path = pathOf(fd)
        const old = files.get(path) ?? Buffer.alloc(0)
        const grown = Buffer.alloc(Math.max(old.length, position + length))
        old.copy(grown)
        data.copy(grown, position, 0, length)
        files.set(path, grown)
      }))),
    sync: (fd) => check("fdatasync", pathOf(fd)),
    truncate: (fd, length) =>
      check("ftruncate", pathOf(fd)).pipe(Effect.zipRight(Effect.sync(() => {
        const path = pathOf(fd)
        files.set(path, Buffer.from((files.get(path) ?? Buffer.alloc(0)).subarray(0, length)))
      }))),
    truncateFile: (path, length) =>
      Effect.sync(() => void files.set(path, Buffer.from((files.get(path) ?? Buffer.alloc(0)).subarray(0, length)))),
    close: (fd) => Effect.sync(() => void fds.delete(fd)),
    syncDir: (dir) => check("fsync", dir),
    remove: (path) => Effect.sync(() => void files.delete(path)),
    rename: (from, to) =>
      Effect.sync(() => {
        const data = files.get(from)
        files.delete(from)
        if (data !== undefined) files.set(to, data)
      })
  }

  return {
    files,
    calls,
    layer: Layer.succeed(JournalFiles, shape),
    /** Calls of kind `op` fail with `code`, `times` times (until `heal` by default). */
    fail: (op: FileOp, code: string, times = Number.POSITIVE_INFINITY) => void faults.set(op, { code, times }),
    heal: () => faults.clear(),
    /** The files as they are now, in a new file system: what a crash at this instant leaves. */
    crash: () => makeMemoryFiles(files),
    /** Segment paths under `dir`, oldest first. */
    segments: (dir: string) => inDir(dir).filter((p) => p.endsWith(".journal")).sort()
  } as const
}

export type MemoryFiles = ReturnType<typeof makeMemoryFiles>
