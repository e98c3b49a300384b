/**
 * The journal's file system calls over node:fs callbacks, each one Effect.async: the group commit
 * pays for two of them per write, where @effect/platform's FileSystem would add a semaphore and a
 * scope to each.
 */
import * as fs from "node:fs"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { JournalFiles, type JournalFilesShape, JournalIoError } from "../services/journal/JournalFiles.js"

const failure = (op: string, path: string, error: NodeJS.ErrnoException) =>
  new JournalIoError({ op, path, code: error.code, cause: error })

const call = <A>(op: string, path: string, run: (done: (error: NodeJS.ErrnoException | null, value: A) => void) => void) =>
  Effect.async<A, JournalIoError>((resume) =>
    run((error, value) => resume(error === null ? Effect.succeed(value) : Effect.fail(failure(op, path, error))))
  )

const writeAll = (
  fd: number,
  data: Buffer,
  offset: number,
  length: number,
  position: number,
  done: (error: NodeJS.ErrnoException | null, value: void) => void
): void => {
  if (offset >= length) return done(null, undefined)
  fs.write(fd, data, offset, length - offset, position, (error, written) => {
    if (error !== null) return done(error, undefined)
    if (written === 0) return done(Object.assign(new Error("short write"), { code: "EIO" }), undefined)
    writeAll(fd, data, offset + written, length, position + written, done)
  })
}

export const NodeJournalFiles: JournalFilesShape = {
  mkdir: (dir) =>
    call<void>("mkdir", dir, (done) => fs.mkdir(dir, { recursive: true }, (error) => done(error, undefined))),
  list: (dir) => call<ReadonlyArray<string>>("readdir", dir, (done) => fs.readdir(dir, (error, names) => done(error, names))),
  read: (path) => call<Buffer>("read", path, (done) => fs.readFile(path, (error, data) => done(error, data))),
  create: (path) => call<number>("open", path, (done) => fs.open(path, "w", (error, fd) => done(error, fd))),
  writeAt: (fd, data, length, position) =>
    call<void>("write", `fd ${fd}`, (done) => writeAll(fd, data, 0, length, position, done)),
  sync: (fd) => call<void>("fdatasync", `fd ${fd}`, (done) => fs.fdatasync(fd, (error) => done(error, undefined))),
  truncate: (fd, length) =>
    call<void>("ftruncate", `fd ${fd}`, (done) => fs.ftruncate(fd, length, (error) => done(error, undefined))),
  truncateFile: (path, length) =>
    call<void>("truncate", path, (done) => fs.truncate(path, length, (error) => done(error, undefined))),
  close: (fd) => call<void>("close", `fd ${fd}`, (done) => fs.close(fd, (error) => done(error, undefined))),
  syncDir: (dir) =>
    call<void>("fsync", dir, (done) =>
      fs.open(dir, "r", (error, fd) => {
        if (error !== null) return done(error, undefined)
        fs.fsync(fd, (error) => fs.close(fd, (closeError) => done(error ?? closeError, undefined)))
      })),
  remove: (path) => call<void>("unlink", path, (done) => fs.unlink(path, (error) => done(error, undefined))),
  rename: (from, to) => call<void>("rename", from, (done) => fs.rename(from, to, (error) => done(error, undefined)))
}

export const NodeJournalFilesLive = Layer.succeed(JournalFiles, NodeJournalFiles)
