import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { sizedByOperator } from "../../src/layers/YoungGeneration.js"

const LAYER = pathToFileURL(resolve(import.meta.dirname, "../../dist/layers/YoungGeneration.js")).href

/**
 * In a fresh process (the built layer, so the test's own heap is left alone): the young
 * generation's size before, and after allocating about 250 MB of which a share survives several
 * scavenges, which is what makes V8 grow it.
 */
const youngGenerationGrowth = (capped: boolean, execArgv: ReadonlyArray<string> = []) => {
  const script = `
    import * as Effect from "effect/Effect"
    import * as Layer from "effect/Layer"
    import { YoungGenerationCapLive, youngGenerationBytes } from ${JSON.stringify(LAYER)}
    const before = youngGenerationBytes()
    if (${capped}) Effect.runSync(Effect.scoped(Layer.build(YoungGenerationCapLive)))
    let kept = []
    for (let round = 0; round < 60; round++) {
      for (let i = 0; i < 100_000; i++) {
        const o = { i, list: [i, i + 1], text: "x" + i }
        if (i % 10 === 0) kept.push(o)
      }
      if (kept.length > 50_000) kept = kept.slice(25_000)
    }
    process.stdout.write("\\n" + JSON.stringify({ before, after: youngGenerationBytes() }))
  `
  const child = spawnSync(process.execPath, [...execArgv, "--input-type=module", "-e", script], {
    cwd: resolve(import.meta.dirname, "../.."),
    encoding: "utf8",
    env: { ...process.env, NODE_OPTIONS: "" }
  })
  assert.strictEqual(child.status, 0, child.stderr)
  // The last line: the layer may log before it.
  return JSON.parse(child.stdout.split("\n").at(-1)!) as { readonly before: number; readonly after: number }
}

describe("YoungGenerationCapLive", () => {
  it("keeps the young generation at the size it had when the layer was built", () => {
    const free = youngGenerationGrowth(false)
    assert.isAbove(free.after, free.before, "without the layer V8 grows it: the load below is enough")
    const capped = youngGenerationGrowth(true)
    assert.strictEqual(capped.after, capped.before)
  })

  it("leaves a young generation sized by node's flags as given", () => {
    const sized = youngGenerationGrowth(true, ["--max-semi-space-size=8"])
    assert.isAbove(sized.after, sized.before)
  })

  it("sees the young generation sized on node's command line or in NODE_OPTIONS", () => {
    assert.isFalse(sizedByOperator([], undefined))
    assert.isFalse(sizedByOperator(["--max-old-space-size=512"], "--enable-source-maps"))
    assert.isTrue(sizedByOperator(["--max-semi-space-size=4"], undefined))
    assert.isTrue(sizedByOperator([], "--enable-source-maps  --min_semi_space_size=2"))
  })
})
