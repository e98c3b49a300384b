import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/s3rver.global.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // End-to-end files start services as child processes; two cores run two files at a time.
    maxWorkers: 2,
    minWorkers: 1
  }
})
