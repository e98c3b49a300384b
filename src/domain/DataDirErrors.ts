/**
 * Why DATA_DIR cannot be used: each ends the start with one line on stderr and exit code 1.
 */
import * as Data from "effect/Data"

/** DATA_DIR (or a directory in it) cannot be created, read or written. */
export class DataDirUnusable extends Data.TaggedError("DataDirUnusable")<{
  /** What went wrong, naming the path at fault. */
  readonly problem: string
  readonly cause?: unknown
}> {}

/** Another live process holds DATA_DIR's lock. */
export class LockHeld extends Data.TaggedError("LockHeld")<{
  readonly lockFile: string
  /** The holder, when its lock file says. */
  readonly pid: number | undefined
}> {}
