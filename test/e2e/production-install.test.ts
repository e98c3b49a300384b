/**
 * The container image's runtime stage, performed on a clean copy: only package.json, the
 * lockfile and dist/, then `npm ci --omit=dev` and `node dist/main.js service` with STORAGE=s3
 * against s3rver. A module the service needs at run time that is only a devDependency (or only
 * resolvable from this checkout's node_modules) fails here, as it would in the image.
 */
import { spawnSync } from "node:child_process"
import { cpSync, existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { randomUUID } from "node:crypto"
import { afterAll, describe, expect, inject, it } from "vitest"
import { postJsonTo } from "../support/http.js"
import { listKeys, makeTestS3Client } from "../support/s3.js"
import { type RunningService, s3rverEnv, startService } from "../support/service.js"
import { waitFor } from "../support/wait.js"

const ROOT = resolve(import.meta.dirname, "../..")

describe("production install (the image's runtime stage)", () => {
  const dir = mkdtempSync(join(tmpdir(), "s3-ingest-prod-"))
  let service: RunningService | undefined

  afterAll(async () => {
    await service?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it("npm ci --omit=dev, then the service stores to S3", async () => {
    for (const file of ["package.json", "package-lock.json"]) cpSync(join(ROOT, file), join(dir, file))
    cpSync(join(ROOT, "dist"), join(dir, "dist"), { recursive: true })
    const install = spawnSync("npm", ["ci", "--omit=dev", "--no-audit", "--no-fund", "--prefer-offline"], {
      cwd: dir,
      encoding: "utf8",
      timeout: 240_000
    })
    expect(install.status, install.stderr).toBe(0)
    // What the image leaves out is really left out.
    expect(existsSync(join(dir, "node_modules/vitest"))).toBe(false)
    expect(existsSync(join(dir, "node_modules/s3rver"))).toBe(false)

    const prefix = `prod-${randomUUID().slice(0, 8)}`
    service = await startService(
      { ...s3rverEnv(inject("s3Endpoint"), inject("s3Bucket"), prefix), BATCH_MAX_WAIT_MS: "20" },
      join(dir, "dist/main.js")
    )
    const reply = await postJsonTo(
      service.port,
      JSON.stringify({ version: "1", token: "t", data: [{ id: "prod-1" }, { id: "prod-2" }] })
    )
    expect(reply.status).toBe(202)
    const client = makeTestS3Client(inject("s3Endpoint"))
    const keys = await waitFor("the object in the bucket", async () => {
      const found = await listKeys(client, inject("s3Bucket"), prefix)
      return found.length > 0 ? found : undefined
    })
    expect(keys[0]).toMatch(new RegExp(`^${prefix}/.*\\.ndjson\\.gz$`))
    expect(await service.stop()).toBe(0)
  }, 300_000)
})
