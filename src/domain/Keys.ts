/**
 * Object keys: decided once per batch, before its first attempt, never from client input, so
 * every retry and every replay of a batch writes the same key with the same bytes.
 */

const pad = (n: number, width: number): string => String(n).padStart(width, "0")

/** `{prefix}/{yyyy}/{mm}/{dd}/{hh}/{yyyymmddTHHMMSSmmmZ}-{instance}-{seq}.ndjson`, UTC. */
export const objectKey = (prefix: string, createdAtMillis: number, instance: string, seq: number): string => {
  const d = new Date(createdAtMillis)
  const yyyy = pad(d.getUTCFullYear(), 4)
  const mm = pad(d.getUTCMonth() + 1, 2)
  const dd = pad(d.getUTCDate(), 2)
  const hh = pad(d.getUTCHours(), 2)
  const stamp = `${yyyy}${mm}${dd}T${hh}${pad(d.getUTCMinutes(), 2)}${pad(d.getUTCSeconds(), 2)}${
    pad(d.getUTCMilliseconds(), 3)
  }Z`
  const name = `${stamp}-${instance}-${pad(seq, 8)}.ndjson`
  const path = `${yyyy}/${mm}/${dd}/${hh}/${name}`
  return prefix === "" ? path : `${prefix}/${path}`
}

/** The last path segment of a key: the dead-letter file name of its batch. */
export const keyFileName = (key: string): string => key.slice(key.lastIndexOf("/") + 1)

const FILE_NAME = /^(\d{4})(\d{2})(\d{2})T(\d{2})\d{4}\d{3}Z-[0-9a-f]{8}-\d{8}\.ndjson$/

/** Rebuilds the key a dead-letter file was meant for, or `undefined` for a foreign file name. */
export const keyFromFileName = (prefix: string, fileName: string): string | undefined => {
  const m = FILE_NAME.exec(fileName)
  if (m === null) return undefined
  const path = `${m[1]}/${m[2]}/${m[3]}/${m[4]}/${fileName}`
  return prefix === "" ? path : `${prefix}/${path}`
}

/** Normalises an operator-given prefix: no leading or trailing slashes. */
export const normalisePrefix = (prefix: string): string => prefix.replace(/^\/+|\/+$/g, "")
