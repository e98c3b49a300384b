/**
 * How an object's NDJSON is written: gzip (one member per object, `.ndjson.gz`) by default, or
 * plain (`.ndjson`). A batch's codec is decided with its key, once; its key's suffix says it
 * ever after, to the store (`Content-Encoding`), to replay and to readers.
 */

export const COMPRESSIONS = ["gzip", "none"] as const
export type Compression = (typeof COMPRESSIONS)[number]

export interface Codec {
  readonly compression: Compression
  /** gzip's level, 1–9; 0 with none. */
  readonly level: number
  readonly extension: ".ndjson.gz" | ".ndjson"
}

export const codecOf = (compression: Compression, level: number): Codec =>
  compression === "gzip"
    ? { compression, level, extension: ".ndjson.gz" }
    : { compression, level: 0, extension: ".ndjson" }

/** The `Content-Encoding` of an object under `key`. */
export const contentEncodingOf = (key: string): "gzip" | undefined => key.endsWith(".gz") ? "gzip" : undefined
