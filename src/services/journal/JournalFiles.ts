/**
 * The journal's file system calls, as a service: node:fs in `layers/NodeJournalFiles`, and in tests
 * one that fails on demand (a short write, ENOSPC, EIO on fsync, a read-only directory).
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"

export class JournalIoError extends Data.TaggedError("JournalIoError")<{
  readonly op: string
  readonly path: string
  readonly code: string | undefined
  readonly cause: unknown
}> {}

export interface JournalFilesShape {
  readonly mkdir: (dir: string) => Effect.Effect<void, JournalIoError>
  /** File names in `dir`. */
  readonly list: (dir: string) => Effect.Effect<ReadonlyArray<string>, JournalIoError>
  readonly read: (path: string) => Effect.Effect<Buffer, JournalIoError>
  /** Creates a file, empty (a leftover of a failed start of the same segment is emptied). */
  readonly create: (path: string) => Effect.Effect<number, JournalIoError>
  /** Writes all of `data[0, length)` at `position`. */
  readonly writeAt: (fd: number, data: Buffer, length: number, position: number) => Effect.Effect<void, JournalIoError>
  readonly sync: (fd: number) => Effect.Effect<void, JournalIoError>
  readonly truncate: (fd: number, length: number) => Effect.Effect<void, JournalIoError>
  readonly truncateFile: (path: string, length: number) => Effect.Effect<void, JournalIoError>
  readonly close: (fd: number) => Effect.Effect<void, JournalIoError>
  /** fsyncs a directory: its entries reach the disk. */
  readonly syncDir: (dir: string) => Effect.Effect<void, JournalIoError>
  readonly remove: (path: string) => Effect.Effect<void, JournalIoError>
  readonly rename: (from: string, to: string) => Effect.Effect<void, JournalIoError>
}

export class JournalFiles extends Context.Tag("s3-ingest/JournalFiles")<JournalFiles, JournalFilesShape>() {}
