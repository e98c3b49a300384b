/**
 * The Kubernetes manifests, checked offline: each resource against Kubernetes' own schemas
 * (kubernetes-models, and its prometheus-operator models for ServiceMonitor and PrometheusRule),
 * every file a kustomization names present, and the invariants the service's shutdown and storage
 * depend on, read from the YAML itself.
 */
import { existsSync, readFileSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule"
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor"
import { StatefulSet } from "kubernetes-models/apps/v1/StatefulSet"
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler"
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget"
import { ConfigMap } from "kubernetes-models/v1/ConfigMap"
import { Service } from "kubernetes-models/v1/Service"
import { describe, expect, it } from "vitest"
import { parseAllDocuments } from "yaml"
import { settingDocs } from "../../src/services/AppConfig.js"

const ROOT = resolve(import.meta.dirname, "../../deploy/kubernetes")
const BASE = join(ROOT, "base")

type Doc = Record<string, unknown>

const load = (path: string): Array<Doc> =>
  parseAllDocuments(readFileSync(path, "utf8")).map((doc) => doc.toJS() as Doc)

/** Validates `doc` as `Model` (the YAML is untyped: the schema check is the point). */
const check = <M extends { validate: () => void }>(Model: new (data: never) => M) => (doc: Doc) =>
  new Model(doc as never).validate()

const validators: Record<string, (doc: Doc) => void> = {
  StatefulSet: check(StatefulSet),
  Service: check(Service),
  ConfigMap: check(ConfigMap),
  PodDisruptionBudget: check(PodDisruptionBudget),
  HorizontalPodAutoscaler: check(HorizontalPodAutoscaler),
  ServiceMonitor: check(ServiceMonitor),
  PrometheusRule: check(PrometheusRule)
}

/** The resources a kustomization names (files, or directories holding one), recursively. */
const resourcesOf = (dir: string): Array<string> => {
  const kustomization = load(join(dir, "kustomization.yaml"))[0]!
  const names = [
    ...((kustomization.resources as Array<string> | undefined) ?? []),
    ...(((kustomization.patches as Array<{ path: string }> | undefined) ?? []).map((patch) => patch.path))
  ]
  return names.flatMap((name) => {
    const path = resolve(dir, name)
    expect(existsSync(path), `${dir}: ${name} exists`).toBe(true)
    return existsSync(join(path, "kustomization.yaml")) ? resourcesOf(path) : [path]
  })
}

const baseFiles = resourcesOf(BASE)
const docs = baseFiles.flatMap(load)
const byKind = (kind: string) => docs.filter((doc) => doc.kind === kind)

interface Container {
  readonly env?: Array<{ readonly name: string; readonly value?: string }>
  readonly ports?: Array<{ readonly name: string; readonly containerPort: number }>
  readonly readinessProbe?: { readonly httpGet?: { readonly path: string; readonly port: string | number } }
  readonly livenessProbe?: { readonly httpGet?: { readonly path: string; readonly port: string | number } }
  readonly lifecycle?: { readonly preStop?: { readonly exec?: { readonly command: Array<string> } } }
  readonly securityContext?: { readonly readOnlyRootFilesystem?: boolean }
  readonly volumeMounts?: Array<{ readonly name: string; readonly mountPath: string }>
}

const statefulSet = new StatefulSet(byKind("StatefulSet")[0]!)
const pod = statefulSet.spec!.template.spec!
const container = pod.containers[0] as Container
const envOf = (name: string) => container.env?.find((e) => e.name === name)?.value
const configMap = byKind("ConfigMap")[0] as { data: Record<string, string> }

describe("deploy/kubernetes", () => {
  it("every file the base and the example overlay name exists, and every resource validates against its schema", () => {
    resourcesOf(join(ROOT, "overlays/example"))
    expect(new Set(docs.map((doc) => doc.kind))).toEqual(new Set(Object.keys(validators)))
    for (const doc of docs) expect(() => validators[doc.kind as string]!(doc), `${doc.kind}`).not.toThrow()
  })

  it("probes /healthz and /readyz on the container's port", () => {
    const port = container.ports!.find((p) => p.containerPort === Number(envOf("PORT")))
    expect(port).toBeDefined()
    expect(container.readinessProbe?.httpGet).toEqual({ path: "/readyz", port: port!.name })
    expect(container.livenessProbe?.httpGet).toEqual({ path: "/healthz", port: port!.name })
  })

  it("sleeps in preStop instead of SHUTDOWN_DELAY_MS, and gives the whole shutdown budget its grace", () => {
    const command = container.lifecycle?.preStop?.exec?.command ?? []
    expect(command[0]).toBe("sleep")
    const preStopSeconds = Number(command[1])
    expect(preStopSeconds).toBeGreaterThan(0)
    expect(envOf("SHUTDOWN_DELAY_MS")).toBe("0")
    const shutdownSeconds = Number(configMap.data.SHUTDOWN_TIMEOUT_MS ?? envOf("SHUTDOWN_TIMEOUT_MS") ?? 25_000) / 1000
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(preStopSeconds + shutdownSeconds + 5)
  })

  it("keeps DATA_DIR on a claim of its own per replica, writable by the non-root user, retained on scale-down", () => {
    const dataDir = envOf("DATA_DIR")
    const claim = statefulSet.spec!.volumeClaimTemplates!.map((t) => t.metadata!.name)
    const mount = container.volumeMounts!.find((m) => m.mountPath === dataDir)
    expect(mount && claim.includes(mount.name)).toBe(true)
    expect(pod.securityContext?.runAsNonRoot).toBe(true)
    expect(pod.securityContext?.fsGroup).toBe(pod.securityContext?.runAsGroup)
    expect(container.securityContext?.readOnlyRootFilesystem).toBe(true)
    expect(statefulSet.spec!.persistentVolumeClaimRetentionPolicy?.whenScaled).toBe("Retain")
  })

  it("names only environment variables the service knows", () => {
    const known = new Set(settingDocs.map((doc) => doc.variable))
    const named = [...(container.env ?? []).map((e) => e.name), ...Object.keys(configMap.data)]
    const overlay = load(join(ROOT, "overlays/example/config.yaml"))[0] as { data: Record<string, string> }
    for (const name of [...named, ...Object.keys(overlay.data)]) expect(known, name).toContain(name)
  })

  it("the example overlay's files are all there", () => {
    const overlay = join(ROOT, "overlays/example")
    const kustomization = load(join(overlay, "kustomization.yaml"))[0] as {
      secretGenerator: Array<{ files: Array<string> }>
    }
    for (const file of kustomization.secretGenerator.flatMap((s) => s.files)) {
      expect(existsSync(join(overlay, file.split("=").pop()!)), file).toBe(true)
    }
    expect(dirname(baseFiles[0]!)).toBe(BASE)
  })
})
