/**
 * The service's settings: one table drives parsing, validation, defaults and `--help`.
 * Values come from the environment; `--kebab-case` flags override them (main.ts installs a
 * ConfigProvider that reads flags first).
 */
import { readFile } from "node:fs/promises"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as ConfigErrors from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import type { KnownSettings } from "../domain/Cli.js"
import { type FaultPlan, parseFaults } from "../domain/Faults.js"
import { type Compression, COMPRESSIONS } from "../domain/Codec.js"
import type { JsonProfile } from "../domain/Collection.js"
import { normalisePrefix } from "../domain/Keys.js"
import { DEFAULT_PARTITIONS, DEFAULT_TEMPLATE, type PartitionTemplate, parseTemplate } from "../domain/Partitions.js"
import { SSE_MODES, type SseMode, STORAGE_CLASSES, type StorageClass, parseObjectTags } from "../domain/S3ObjectSettings.js"
import {
  ConfigInvalid,
  describe,
  docs,
  firstProblem,
  int,
  integerIn,
  oneOf,
  optionalOneOf,
  optionalText,
  parsed,
  type SettingDoc,
  text
} from "./SettingsTable.js"

export type Storage = "local" | "s3"
export type Durability = "journal" | "memory"
export type Checksum = "WHEN_REQUIRED" | "WHEN_SUPPORTED"
export const logLevelNames = ["all", "trace", "debug", "info", "warn", "warning", "error", "fatal", "none"] as const
export type LogLevelName = (typeof logLevelNames)[number]

export interface Settings {
  readonly host: string
  readonly port: number
  readonly maxWorkers: number
  readonly maxQueue: number
  readonly maxQueueBytes: number
  readonly maxPayloadsPerRequest: number
  readonly batchMaxItems: number
  readonly batchMaxBytes: number
  readonly batchMaxWaitMs: number
  readonly maxBodyBytes: number
  readonly maxJsonDepth: number
  /** `i-json` refuses what strict readers refuse (RFC 7493); `json` takes any RFC 8259 text. */
  readonly jsonProfile: JsonProfile
  readonly requestTimeoutMs: number
  readonly keepAliveTimeoutMs: number
  readonly uploadTimeoutMs: number
  readonly uploadRetries: number
  readonly breakerFailures: number
  readonly breakerCooldownMs: number
  readonly shedHighWater: number
  readonly shutdownTimeoutMs: number
  readonly shutdownDelayMs: number
  readonly storage: Storage
  /** `journal`: 202 once the journal's fsync covers the collection; `memory`: 202 once queued. */
  readonly durability: Durability
  /** Longest wait of a `?ack=stored` request before it is answered 202. */
  readonly ackTimeoutMs: number
  /** gzip objects (`.ndjson.gz`) or plain ones (`.ndjson`). */
  readonly objectCompression: Compression
  /** gzip's level, 1–9. */
  readonly objectCompressionLevel: number
  /** KEY_PARTITIONS, parsed. */
  readonly partitions: PartitionTemplate
  /** Most `{version}` values batching at once; a new one beyond goes to `_overflow`. */
  readonly maxPartitions: number
  readonly dataDir: string
  readonly s3Bucket: string | undefined
  /** Normalised: no leading or trailing "/"; "" means keys start at the year. */
  readonly s3Prefix: string
  readonly s3Region: string
  readonly s3Endpoint: string | undefined
  readonly s3ForcePathStyle: boolean
  readonly s3Checksum: Checksum
  /** Server-side encryption of every PUT, and the KMS key with `aws:kms`. */
  readonly s3Sse: SseMode | undefined
  readonly s3SseKmsKeyId: string | undefined
  readonly s3StorageClass: StorageClass | undefined
  /** Tags of every object, as S3's `Tagging` header wants them (URL-encoded `k=v&k2=v2`). */
  readonly s3ObjectTags: string | undefined
  /** The allow-list of ingest tokens, or `undefined` when any token is accepted. */
  readonly ingestTokens: ReadonlyArray<string> | undefined
  /** Fault injection around the store (`STORE_FAULTS`), for rehearsals and tests. */
  readonly storeFaults: FaultPlan | undefined
  readonly logLevel: LogLevelName
}

export { ConfigInvalid }

export class AppConfig extends Context.Tag("s3-ingest/AppConfig")<AppConfig, Settings>() {}

/** An http(s) URL: anything else would only fail at the first upload, as a connection error. */
const endpointUrl = (text: string): Either.Either<string, string> => {
  const valid = URL.canParse(text) && ["http:", "https:"].includes(new URL(text).protocol)
  return valid ? Either.right(text) : Either.left(`must be an http:// or https:// URL, got "${text}"`)
}

const settingsConfig = Config.all({
  host: text("HOST", "0.0.0.0", "listen address"),
  port: describe(
    "PORT",
    "8080",
    "listen port (0 picks a free port)",
    parsed("PORT", integerIn(0, 65535)).pipe(Config.withDefault(8080))
  ),
  maxWorkers: int("MAX_WORKERS", 16, 1, "upload fibers"),
  maxQueue: int("MAX_QUEUE", 100_000, 1, "queued payloads (bound)"),
  maxQueueBytes: int("MAX_QUEUE_BYTES", 67_108_864, 1, "encoded bytes of queued payloads (bound)"),
  maxPayloadsPerRequest: int("MAX_PAYLOADS_PER_REQUEST", 10_000, 1, "more payloads in one collection → 413"),
  batchMaxItems: int("BATCH_MAX_ITEMS", 1000, 1, "payloads per object"),
  batchMaxBytes: int("BATCH_MAX_BYTES", 8_388_608, 1, "bytes per object"),
  batchMaxWaitMs: int("BATCH_MAX_WAIT_MS", 200, 0, "time a batch stays open after its first payload"),
  maxBodyBytes: int("MAX_BODY_BYTES", 1_048_576, 1, "request body limit, after gzip inflation"),
  maxJsonDepth: int("MAX_JSON_DEPTH", 64, 1, "deeper nesting anywhere in the body → 400"),
  jsonProfile: oneOf(
    "JSON_PROFILE",
    "i-json",
    "i-json: refuse duplicate member names, escaped lone surrogates, numbers beyond a double",
    "i-json",
    "json"
  ),
  requestTimeoutMs: int("REQUEST_TIMEOUT_MS", 10_000, 1, "the whole request must arrive in time (408)"),
  keepAliveTimeoutMs: int("KEEP_ALIVE_TIMEOUT_MS", 65_000, 1, "idle keep-alive timeout"),
  uploadTimeoutMs: int("UPLOAD_TIMEOUT_MS", 10_000, 1, "deadline of one upload attempt"),
  uploadRetries: int("UPLOAD_RETRIES", 5, 0, "retries after the first attempt"),
  breakerFailures: int("BREAKER_FAILURES", 5, 1, "consecutive retryable failures that open the breaker"),
  breakerCooldownMs: int("BREAKER_COOLDOWN_MS", 1000, 1, "breaker open time before a probe"),
  shedHighWater: describe(
    "SHED_HIGH_WATER",
    "0.8",
    "queue fill above which intake sheds while the breaker is open",
    parsed("SHED_HIGH_WATER", (text) => {
      const n = Number(text)
      return /^\d*\.?\d+$/.test(text) && n > 0 && n <= 1
        ? Either.right(n)
        : Either.left(`must be a number in (0, 1], got "${text}"`)
    }).pipe(Config.withDefault(0.8))
  ),
  shutdownTimeoutMs: int("SHUTDOWN_TIMEOUT_MS", 25_000, 1, "signal → exit budget"),
  shutdownDelayMs: int("SHUTDOWN_DELAY_MS", 0, 0, "intake kept open after the signal"),
  storage: oneOf("STORAGE", "local", "object store", "local", "s3"),
  durability: oneOf(
    "DURABILITY",
    "journal",
    "journal: 202 after the write-ahead journal's fsync (survives a crash); memory: 202 once queued",
    "journal",
    "memory"
  ),
  ackTimeoutMs: int("ACK_TIMEOUT_MS", 10_000, 1, "longest wait of a ?ack=stored request before it is answered 202"),
  objectCompression: oneOf("OBJECT_COMPRESSION", "gzip", "object bodies", ...COMPRESSIONS),
  partitions: describe(
    "KEY_PARTITIONS",
    DEFAULT_TEMPLATE,
    "key partitions between prefix and file name: {yyyy} {mm} {dd} {hh} {version} and A-Z a-z 0-9 = . _ -",
    parsed("KEY_PARTITIONS", (text) => {
      const template = parseTemplate(text)
      return "error" in template ? Either.left(template.error) : Either.right(template)
    }).pipe(Config.withDefault(DEFAULT_PARTITIONS))
  ),
  maxPartitions: int("MAX_PARTITIONS", 64, 1, "most {version} values batching at once; a new one beyond goes to _overflow"),
  objectCompressionLevel: describe(
    "OBJECT_COMPRESSION_LEVEL",
    "3",
    "gzip level: 3 keeps 90 % of level 6's ratio for 65 % of its CPU (BENCHMARKS.md)",
    parsed("OBJECT_COMPRESSION_LEVEL", integerIn(1, 9)).pipe(Config.withDefault(3))
  ),
  dataDir: text("DATA_DIR", "./data", "local objects, dead-letter, journal, lock file"),
  s3Bucket: optionalText("S3_BUCKET", "S3 bucket (required with STORAGE=s3)"),
  s3Prefix: text("S3_PREFIX", "payloads", "key prefix (both stores)").pipe(Config.map(normalisePrefix)),
  s3Region: describe(
    "S3_REGION",
    "AWS_REGION, else us-east-1",
    "S3 region",
    Config.string("S3_REGION").pipe(
      Config.orElse(() => Config.string("AWS_REGION")),
      Config.withDefault("us-east-1")
    )
  ),
  s3Endpoint: describe(
    "S3_ENDPOINT",
    "unset",
    "S3-compatible endpoint URL (http:// or https://)",
    Config.string("S3_ENDPOINT").pipe(
      Config.mapOrFail((text) =>
        text === ""
          ? Either.right(undefined)
          : Either.mapLeft(endpointUrl(text), (message) => ConfigErrors.InvalidData([], message))
      ),
      Config.withDefault(undefined)
    )
  ),
  s3ForcePathStyle: describe(
    "S3_FORCE_PATH_STYLE",
    "false",
    "path-style bucket addressing",
    Config.boolean("S3_FORCE_PATH_STYLE").pipe(Config.withDefault(false)),
    true
  ),
  s3Checksum: oneOf("S3_CHECKSUM", "WHEN_REQUIRED", "request checksums", "WHEN_REQUIRED", "WHEN_SUPPORTED"),
  s3Sse: optionalOneOf("S3_SSE", "server-side encryption of every object", ...SSE_MODES),
  s3SseKmsKeyId: optionalText("S3_SSE_KMS_KEY_ID", "KMS key of S3_SSE=aws:kms (else the bucket's default key)"),
  s3StorageClass: optionalOneOf("S3_STORAGE_CLASS", "storage class of every object", ...STORAGE_CLASSES),
  s3ObjectTags: optionalText("S3_OBJECT_TAGS", "tags of every object, URL-encoded k=v&k2=v2, at most 10"),
  ingestTokens: optionalText("INGEST_TOKENS", "comma-separated token allow-list"),
  ingestTokensFile: optionalText("INGEST_TOKENS_FILE", "file with one allowed token per line"),
  storeFaults: optionalText(
    "STORE_FAULTS",
    "fault injection around the store, e.g. latency=200ms±100,error=0.2:SlowDown,hang=0.01,applied-then-500=0.05"
  ),
  logLevel: oneOf("LOG_LEVEL", "info", "log level", ...logLevelNames)
})

/** The settings table for `--help`. */
export const settingDocs: ReadonlyArray<SettingDoc> = docs

/** What the command line may set. */
export const knownSettings: KnownSettings = {
  variables: new Set(docs.map((doc) => doc.variable)),
  booleans: new Set(docs.filter((doc) => doc.boolean).map((doc) => doc.variable))
}

const splitTokens = (raw: string, separator: RegExp): Array<string> =>
  raw.split(separator).map((t) => t.trim()).filter((t) => t.length > 0)

/** Loads and checks every setting; reads `INGEST_TOKENS_FILE` when given. */
export const loadSettings: Effect.Effect<Settings, ConfigInvalid> = Effect.gen(function*() {
  const raw = yield* Effect.mapError(settingsConfig, firstProblem)
  if (raw.storage === "s3" && (raw.s3Bucket === undefined || raw.s3Bucket === "")) {
    return yield* new ConfigInvalid({ variable: "S3_BUCKET", message: "is required with STORAGE=s3" })
  }
  if (raw.s3SseKmsKeyId !== undefined && raw.s3Sse !== "aws:kms") {
    return yield* new ConfigInvalid({ variable: "S3_SSE_KMS_KEY_ID", message: "is only used with S3_SSE=aws:kms" })
  }
  let s3ObjectTags: string | undefined
  if (raw.s3ObjectTags !== undefined) {
    const tags = parseObjectTags(raw.s3ObjectTags)
    if ("error" in tags) return yield* new ConfigInvalid({ variable: "S3_OBJECT_TAGS", message: tags.error })
    s3ObjectTags = tags.tagging
  }
  let storeFaults: FaultPlan | undefined
  if (raw.storeFaults !== undefined && raw.storeFaults.trim() !== "") {
    const plan = parseFaults(raw.storeFaults)
    if ("error" in plan) return yield* new ConfigInvalid({ variable: "STORE_FAULTS", message: plan.error })
    storeFaults = plan
  }
  let tokens: Array<string> | undefined = raw.ingestTokens === undefined
    ? undefined
    : splitTokens(raw.ingestTokens, /,/)
  if (raw.ingestTokensFile !== undefined) {
    const path = raw.ingestTokensFile
    // node:fs rather than @effect/platform's FileSystem here: its error types load effect/Schema,
    // a few hundred milliseconds that every start would pay before the first request.
    const content = yield* Effect.tryPromise({
      try: () => readFile(path, "utf8"),
      catch: () => new ConfigInvalid({ variable: "INGEST_TOKENS_FILE", message: "cannot be read" })
    })
    tokens = [...(tokens ?? []), ...splitTokens(content, /\r?\n/)]
  }
  if (tokens !== undefined && tokens.length === 0) {
    const variable = raw.ingestTokensFile !== undefined ? "INGEST_TOKENS_FILE" : "INGEST_TOKENS"
    return yield* new ConfigInvalid({ variable, message: "holds no token" })
  }
  const { ingestTokensFile: _file, ...settings } = raw
  return { ...settings, ingestTokens: tokens, storeFaults, s3ObjectTags }
})

/**
 * The table's defaults on loopback with a free port, overridden field by field: for tests.
 * Read from the table itself (an empty provider), so tests and `--help` cannot drift apart.
 */
export const testLayer = (overrides: Partial<Settings> = {}): Layer.Layer<AppConfig> =>
  Layer.effect(
    AppConfig,
    loadSettings.pipe(
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map())),
      Effect.orDie,
      Effect.map((defaults): Settings => ({ ...defaults, host: "127.0.0.1", port: 0, ...overrides }))
    )
  )
