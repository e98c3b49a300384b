/**
 * Every NDJSON line a store holds, each with where it was found (a file under a directory, or a
 * key in a bucket), so an oracle can count lines and ids and name the objects behind a finding.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import type { S3Client } from "@aws-sdk/client-s3"
import { getObject, listKeys } from "./s3.js"
import { listFiles, ndjsonText } from "./service.js"

export interface FoundLine {
  /** `{label}/{file}` or `s3:{key}`. */
  readonly where: string
  readonly line: string
}

const split = (where: string, text: string): Array<FoundLine> =>
  text.split("\n").filter((line) => line !== "").map((line) => ({ where, line }))

/** The lines of every file under `dir` (gunzipped when `.gz`); none when `dir` does not exist. */
export const linesInDir = (dir: string, label: string): Array<FoundLine> =>
  listFiles(dir).flatMap((file) => split(`${label}/${file}`, ndjsonText(file, readFileSync(join(dir, file)))))

/** The lines of every object under `prefix/`, read a few at a time. */
export const linesInBucket = async (client: S3Client, bucket: string, prefix: string): Promise<Array<FoundLine>> => {
  const keys = await listKeys(client, bucket, `${prefix}/`)
  const found: Array<FoundLine> = []
  for (let i = 0; i < keys.length; i += 16) {
    const slice = keys.slice(i, i + 16)
    const bodies = await Promise.all(slice.map((key) => getObject(client, bucket, key)))
    for (const [k, { body }] of bodies.entries()) found.push(...split(`s3:${slice[k]!}`, ndjsonText(slice[k]!, body)))
  }
  return found
}

/** A plain-text table (no colours), one row per object, for numbers meant to be quoted. */
export const textTable = (rows: ReadonlyArray<object>): string => {
  const head = Object.keys(rows[0] ?? {})
  const cells = rows.map((row) => {
    const values = new Map<string, unknown>(Object.entries(row))
    return head.map((name) => values.get(name) === undefined ? "-" : String(values.get(name)))
  })
  const widths = head.map((name, i) => Math.max(name.length, ...cells.map((line) => line[i]!.length)))
  return [head, ...cells].map((line) => line.map((cell, i) => cell.padStart(widths[i]!)).join("  ")).join("\n")
}
