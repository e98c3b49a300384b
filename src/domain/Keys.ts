/**
 * Object keys: decided once per batch, before its first attempt, never from client input, so
 * every retry and every replay of a batch writes the same key with the same bytes.
 */

const pad = (n: number, width: number): string => String(n).padStart(width, "0")

/**
 * `{prefix}/{partitions}/{yyyymmddTHHMMSSmmmZ}-{instance}-{seq}{extension}`, the stamp in UTC;
 * `partitions` is KEY_PARTITIONS filled in for the batch (domain/Partitions).
 */
export const objectKey = (
  prefix: string,
  partitions: string,
  createdAtMillis: number,
  instance: string,
  seq: number,
  extension: string
): string => {
  const d = new Date(createdAtMillis)
  const stamp = `${pad(d.getUTCFullYear(), 4)}${pad(d.getUTCMonth() + 1, 2)}${pad(d.getUTCDate(), 2)}T${
    pad(d.getUTCHours(), 2)
  }${pad(d.getUTCMinutes(), 2)}${pad(d.getUTCSeconds(), 2)}${pad(d.getUTCMilliseconds(), 3)}Z`
  const path = `${partitions}/${stamp}-${instance}-${pad(seq, 8)}${extension}`
  return prefix === "" ? path : `${prefix}/${path}`
}

/** The last path segment of a key: its file name. */
export const keyFileName = (key: string): string => key.slice(key.lastIndexOf("/") + 1)

/** The key without its prefix: where its dead-letter file lives under `dead-letter/`. */
export const keyBelowPrefix = (prefix: string, key: string): string =>
  prefix !== "" && key.startsWith(`${prefix}/`) ? key.slice(prefix.length + 1) : key

const FILE_NAME = /^(\d{4})(\d{2})(\d{2})T(\d{2})\d{4}\d{3}Z-[0-9a-f]{8}-\d{8,}\.ndjson(?:\.gz)?$/
/** A directory of a key below its prefix: a date part or a partition (`version=1.4`, `_overflow`). */
const SEGMENT = /^[A-Za-z0-9=._-]+$/

/**
 * Rebuilds the key a dead-letter file was meant for from its path under `dead-letter/`: the
 * prefix and the path (directories mirroring the key), or, for a bare file name (the layout before
 * partitions), the prefix and the date directories its time stamp gives. `undefined` for a path
 * that is no dead-letter file's.
 */
export const keyOfDeadLetter = (prefix: string, path: string): string | undefined => {
  const segments = path.split("/")
  const name = segments.pop()!
  const m = FILE_NAME.exec(name)
  if (m === null) return undefined
  if (segments.some((s) => !SEGMENT.test(s) || s === "." || s === "..")) return undefined
  const below = segments.length === 0 ? `${m[1]}/${m[2]}/${m[3]}/${m[4]}/${name}` : path
  return prefix === "" ? below : `${prefix}/${below}`
}

/** Normalises an operator-given prefix: no leading or trailing slashes. */
export const normalisePrefix = (prefix: string): string => prefix.replace(/^\/+|\/+$/g, "")
