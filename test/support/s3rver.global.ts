/**
 * Starts one s3rver (a real S3-compatible server) on a free loopback port with its own temp
 * directory for the whole test run; tests read its endpoint with `inject("s3Endpoint")`.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import S3rver from "s3rver"
import type {} from "vitest"
import type { TestProject } from "vitest/node"

export const S3_BUCKET = "ingest-test"

declare module "vitest" {
  export interface ProvidedContext {
    readonly s3Endpoint: string
    readonly s3Bucket: string
    /** Where s3rver keeps its files: `{dir}/{bucket}/{key}._S3rver_object`. */
    readonly s3rverDirectory: string
  }
}

export default async function setup(project: TestProject) {
  const directory = mkdtempSync(join(tmpdir(), "s3rver-"))
  const server = new S3rver({
    address: "127.0.0.1",
    port: 0,
    directory,
    silent: true,
    configureBuckets: [{ name: S3_BUCKET }]
  })
  const address = await server.run()
  project.provide("s3Endpoint", `http://127.0.0.1:${address.port}`)
  project.provide("s3Bucket", S3_BUCKET)
  project.provide("s3rverDirectory", directory)
  return async () => {
    await server.close()
    rmSync(directory, { recursive: true, force: true })
  }
}
