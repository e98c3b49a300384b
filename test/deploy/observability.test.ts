/**
 * The dashboard and the alerts against the service itself: every metric they query is one a
 * running service exposes (so they cannot drift from it), and the alert rules pass
 * `promtool check rules` and fire in `promtool test rules` on synthetic series. The rules are the
 * PrometheusRule's `spec`, from its one source file.
 *
 * promtool comes from Debian's `prometheus` package (`.ci/run` installs it). Without it these two
 * tests are skipped, unless REQUIRE_DEPLOY_TOOLS=1 (as in CI) makes its absence a failure.
 */
import { spawnSync } from "node:child_process"
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { parse, stringify } from "yaml"
import { metricsText } from "../support/metrics.js"
import { type RunningService, startService } from "../support/service.js"

const DEPLOY = resolve(import.meta.dirname, "../../deploy")
const RULE_FILE = join(DEPLOY, "kubernetes/base/prometheusrule.yaml")

interface RuleSpec {
  readonly groups: Array<{ readonly name: string; readonly rules: Array<{ readonly alert: string; readonly expr: string }> }>
}

const ruleSpec = (parse(readFileSync(RULE_FILE, "utf8")) as { spec: RuleSpec }).spec

const dashboardExprs = (): Array<string> => {
  const dashboard = JSON.parse(readFileSync(join(DEPLOY, "grafana/s3-ingest.json"), "utf8")) as {
    panels: Array<{ title: string; targets: Array<{ expr: string }> }>
  }
  return dashboard.panels.flatMap((panel) => panel.targets.map((target) => target.expr))
}

const METRIC = /\b(?:s3ingest|process)_[a-z0-9_]+\b/g

const hasPromtool = spawnSync("promtool", ["--version"]).status === 0
const requireTools = process.env.REQUIRE_DEPLOY_TOOLS === "1"

describe("deploy: dashboard and alerts", () => {
  let service: RunningService
  beforeAll(async () => {
    service = await startService()
  })
  afterAll(async () => {
    await service.stop()
  })

  it("query only metrics a running service exposes", async () => {
    const text = await metricsText(service.port)
    const exposed = new Set<string>()
    for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      exposed.add(name!)
      if (type === "histogram") for (const suffix of ["_bucket", "_sum", "_count"]) exposed.add(name! + suffix)
    }
    const alertExprs = ruleSpec.groups.flatMap((group) => group.rules.map((rule) => rule.expr))
    const used = new Set([...dashboardExprs(), ...alertExprs].flatMap((expr) => expr.match(METRIC) ?? []))
    expect(used.size).toBeGreaterThan(15)
    for (const name of used) expect(exposed, name).toContain(name)
  })

  it.runIf(hasPromtool || requireTools)("pass promtool check rules and promtool test rules", () => {
    expect(hasPromtool, "promtool on PATH (apt-get install --no-install-recommends prometheus)").toBe(true)
    const dir = mkdtempSync(join(tmpdir(), "s3-ingest-rules-"))
    writeFileSync(join(dir, "rules.yaml"), stringify(ruleSpec))
    copyFileSync(join(DEPLOY, "prometheus/alerts.test.yaml"), join(dir, "alerts.test.yaml"))
    const check = spawnSync("promtool", ["check", "rules", "rules.yaml"], { cwd: dir, encoding: "utf8" })
    expect(check.status, check.stdout + check.stderr).toBe(0)
    const test = spawnSync("promtool", ["test", "rules", "alerts.test.yaml"], { cwd: dir, encoding: "utf8" })
    expect(test.status, test.stdout + test.stderr).toBe(0)
    // Every alert has a unit test that fires it.
    const tested = readFileSync(join(DEPLOY, "prometheus/alerts.test.yaml"), "utf8")
    for (const rule of ruleSpec.groups.flatMap((group) => group.rules)) {
      expect(tested, rule.alert).toContain(`alertname: ${rule.alert}`)
    }
  })
})
