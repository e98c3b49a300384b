/**
 * What a data engineer gets: DuckDB reads the objects the service stored, as they are, with Hive
 * partitions (`version=…/dt=…/hour=…`) — the local store's files, and s3rver's object files (gzip).
 * The count per version equals what was sent, every row equals its payload, and a payload that a
 * strict reader would refuse never reaches an object.
 */
import { randomUUID } from "node:crypto"
import { join } from "node:path"
import { DuckDBInstance } from "@duckdb/node-api"
import { afterEach, describe, expect, inject, it } from "vitest"
import { postJson, type RunningService, s3rverEnv, startService } from "../support/service.js"

const s3Endpoint = inject("s3Endpoint")
const s3Bucket = inject("s3Bucket")
const s3rverDirectory = inject("s3rverDirectory")
const runId = randomUUID().slice(0, 8)

const HIVE = "version={version}/dt={yyyy}-{mm}-{dd}/hour={hh}"

interface Payload {
  readonly id: string
  readonly n: number
  readonly text: string
  readonly nested: { readonly ok: boolean; readonly list: ReadonlyArray<number> }
}

/** Collections of `per` payloads for each version, `rounds` times over. */
const traffic = (label: string, versions: ReadonlyArray<string>, rounds: number, per: number) =>
  Array.from({ length: rounds }, (_, round) =>
    versions.map((version) => ({
      version,
      data: Array.from({ length: per }, (_, i): Payload => ({
        id: `${runId}-${label}-${version}-${round}-${i}`,
        n: round * 100 + i,
        text: `payload ${i} of ${version} — ünïcödé ☃ "quoted"`,
        nested: { ok: i % 2 === 0, list: [round, i] }
      }))
    }))).flat()

let service: RunningService | undefined
afterEach(async () => {
  await service?.stop("SIGKILL")
  service = undefined
})

/** Posts every collection (202 each), then one that I-JSON refuses; SIGTERM; exit 0. */
const ingest = async (running: RunningService, collections: ReturnType<typeof traffic>) => {
  for (const { data, version } of collections) {
    expect((await postJson(running.url, { version, token: "t", data })).status).toBe(202)
  }
  const refused = `{"version":"1.0","token":"t","data":[{"id":"${runId}-refused","a":1,"a":2}]}`
  expect((await postJson(running.url, refused)).status).toBe(400)
  expect(await running.stop("SIGTERM")).toBe(0)
}

/** Rows DuckDB reads from `glob` with Hive partitions, each as the JSON of its typed columns. */
const duckRows = async (glob: string, options = "") => {
  const instance = await DuckDBInstance.create(":memory:")
  const connection = await instance.connect()
  try {
    const reader = await connection.runAndReadAll(
      `SELECT to_json(t)::VARCHAR AS row FROM read_ndjson('${glob}', hive_partitioning = true, hive_types = {'version': 'VARCHAR'}${options}) t`
    )
    // to_json keeps DuckDB's inferred types (BIGINT, BOOLEAN, lists, structs) as JSON values.
    return reader.getRowObjects().map((row) => JSON.parse(String(row.row)) as Record<string, unknown>)
  } finally {
    connection.closeSync()
    instance.closeSync()
  }
}

const expectReadBack = (rows: Array<Record<string, unknown>>, sent: ReturnType<typeof traffic>) => {
  const payloads = sent.flatMap(({ data, version }) => data.map((payload) => ({ ...payload, version })))
  expect(rows.length).toBe(payloads.length)
  const perVersion = (list: Array<{ readonly version?: unknown }>) =>
    Object.fromEntries([...new Set(list.map((r) => String(r.version)))].sort().map((v) => [
      v,
      list.filter((r) => String(r.version) === v).length
    ]))
  expect(perVersion(rows)).toEqual(perVersion(payloads))
  const byId = new Map(rows.map((row) => [String(row.id), row]))
  for (const payload of payloads) {
    const row = byId.get(payload.id)
    expect(row, payload.id).toBeDefined()
    expect({ ...row, dt: undefined, hour: undefined }).toEqual({ ...payload, dt: undefined, hour: undefined })
  }
  expect(byId.has(`${runId}-refused`)).toBe(false)
}

describe("DuckDB reads the stored objects as they are", () => {
  const versions = ["1.0", "2.0", "3.1"]

  it("local store, gzip, Hive partitions by version: counts per version and every row as sent", async () => {
    const sent = traffic("local", versions, 4, 9)
    service = await startService({ KEY_PARTITIONS: HIVE, BATCH_MAX_ITEMS: "7", BATCH_MAX_WAIT_MS: "50" })
    const running = service
    await ingest(running, sent)
    service = undefined
    const rows = await duckRows(join(running.dataDir, "objects", "payloads", "**", "*.ndjson.gz"))
    expectReadBack(rows, sent)
  }, 30_000)

  it("s3rver, gzip objects on its disk, Hive partitions by version", async () => {
    const sent = traffic("s3", versions, 3, 8)
    const prefix = `${runId}/downstream`
    service = await startService({
      ...s3rverEnv(s3Endpoint, s3Bucket, prefix),
      KEY_PARTITIONS: HIVE,
      BATCH_MAX_ITEMS: "5",
      BATCH_MAX_WAIT_MS: "50"
    })
    const running = service
    await ingest(running, sent)
    service = undefined
    const glob = join(s3rverDirectory, s3Bucket, ...prefix.split("/"), "**", "*._S3rver_object")
    const rows = await duckRows(glob, ", compression = 'gzip'")
    expectReadBack(rows, sent)
  }, 30_000)

  it("a version unsafe in a key lands in _invalid, a version beyond MAX_PARTITIONS in _overflow", async () => {
    // Batches stay open for the whole run, so "1.0" and "2.0" are still batching when "3.1" arrives.
    const sent = [...traffic("bounded", ["1.0", "2.0", "3.1"], 1, 4), ...traffic("unsafe", ["../etc"], 1, 3)]
    service = await startService({ KEY_PARTITIONS: HIVE, MAX_PARTITIONS: "2", BATCH_MAX_WAIT_MS: "60000" })
    const running = service
    await ingest(running, sent)
    service = undefined
    const rows = await duckRows(join(running.dataDir, "objects", "payloads", "**", "*.ndjson.gz"))
    const expected = sent.map(({ data, version }) => ({
      data,
      version: version === "3.1" ? "_overflow" : version === "../etc" ? "_invalid" : version
    }))
    expectReadBack(rows, expected)
  }, 30_000)
})
