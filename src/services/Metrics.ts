/**
 * The one Prometheus registry, with prom-client's default process metrics.
 * Updates are plain synchronous calls; the accepted-payloads counter and the queue gauges are read
 * at scrape time from a probe the JobQueue installs, so admission does not pay for them.
 */
import * as Effect from "effect/Effect"
import * as Prometheus from "prom-client"
import { type RejectionReason, rejectionReasons } from "../domain/Rejection.js"
import { repeatedObservation } from "./RepeatedObservation.js"

export interface QueueProbe {
  /** Payloads answered with 202 since start. */
  readonly acceptedPayloads: () => number
  readonly queuedPayloads: () => number
  readonly queuedBytes: () => number
  readonly inFlightPayloads: () => number
}

export type AttemptOutcome = "ok" | "error" | "timeout"
export type BreakerState = 0 | 1 | 2

const make = () => {
  const registry = new Prometheus.Registry()
  Prometheus.collectDefaultMetrics({ register: registry })
  const registers = [registry]
  let probe: QueueProbe | undefined

  const counter = (name: string, help: string) => new Prometheus.Counter({ name, help, registers })
  const probeGauge = (name: string, help: string, read: (p: QueueProbe) => number) =>
    new Prometheus.Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(probe === undefined ? 0 : read(probe))
      }
    })

  const rejectedCounter = new Prometheus.Counter({
    name: "s3ingest_requests_rejected_total",
    help: "Requests refused, by reason",
    labelNames: ["reason"] as const,
    registers
  })
  // Children resolved once: `labels()` hashes its arguments on every call.
  const rejectedBy = Object.fromEntries(
    rejectionReasons.map((reason) => [reason, rejectedCounter.labels(reason)])
  ) as Record<RejectionReason, Prometheus.Counter.Internal>
  // A series per reason from the start, so dashboards see 0 rather than no data.
  for (const child of Object.values(rejectedBy)) child.inc(0)

  const attempts = new Prometheus.Counter({
    name: "s3ingest_upload_attempts_total",
    help: "Upload attempts, by outcome",
    labelNames: ["outcome"] as const,
    registers
  })
  const attemptsBy: Record<AttemptOutcome, Prometheus.Counter.Internal> = {
    ok: attempts.labels("ok"),
    error: attempts.labels("error"),
    timeout: attempts.labels("timeout")
  }
  for (const child of Object.values(attemptsBy)) child.inc(0)

  const objectBytes = new Prometheus.Counter({
    name: "s3ingest_object_bytes_total",
    help: "Bytes of stored objects: raw NDJSON before compression, and stored as written",
    labelNames: ["stage"] as const,
    registers
  })
  const objectBytesRaw = objectBytes.labels("raw")
  const objectBytesStored = objectBytes.labels("stored")
  objectBytesRaw.inc(0)
  objectBytesStored.inc(0)

  const breakerState = new Prometheus.Gauge({
    name: "s3ingest_store_breaker_state",
    help: "Store circuit breaker: 0 closed, 1 half-open, 2 open",
    registers
  })
  breakerState.set(0)

  const deliveryDuration = new Prometheus.Histogram({
    name: "s3ingest_payload_delivery_seconds",
    help: "Time from 202 to stored, one observation per payload",
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers
  })

  // Read from the queue at scrape time, like the gauges below: admission, once per request,
  // then makes no prom-client call.
  let acceptedReported = 0
  new Prometheus.Counter({
    name: "s3ingest_payloads_accepted_total",
    help: "Payloads answered with 202",
    registers,
    collect() {
      const total = probe === undefined ? 0 : probe.acceptedPayloads()
      this.inc(total - acceptedReported)
      acceptedReported = total
    }
  })
  let journalBytes: () => number = () => 0
  new Prometheus.Gauge({
    name: "s3ingest_journal_bytes",
    help: "Bytes in journal segments on disk",
    registers,
    collect() {
      this.set(journalBytes())
    }
  })
  const journalFsync = new Prometheus.Histogram({
    name: "s3ingest_journal_fsync_seconds",
    help: "Duration of one group-commit fsync of the journal",
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers
  })
  const journalRecovered = counter(
    "s3ingest_journal_recovered_payloads_total",
    "Payloads found unsettled in the journal at start"
  )
  const journalCorrupt = counter(
    "s3ingest_journal_corrupt_records_total",
    "Journal records that failed their checksum outside the torn tail"
  )
  const journalWriteErrors = counter("s3ingest_journal_write_errors_total", "Failed journal writes or fsyncs")
  let capacity = { payloads: 0, bytes: 0 }
  new Prometheus.Gauge({
    name: "s3ingest_queue_capacity_payloads",
    help: "MAX_QUEUE: the queue's bound in payloads",
    registers,
    collect() {
      this.set(capacity.payloads)
    }
  })
  new Prometheus.Gauge({
    name: "s3ingest_queue_capacity_bytes",
    help: "MAX_QUEUE_BYTES: the queue's bound in encoded bytes",
    registers,
    collect() {
      this.set(capacity.bytes)
    }
  })
  probeGauge("s3ingest_queue_payloads", "Payloads waiting in the queue", (p) => p.queuedPayloads())
  probeGauge("s3ingest_queue_bytes", "Encoded bytes waiting in the queue", (p) => p.queuedBytes())
  probeGauge("s3ingest_payloads_in_flight", "Payloads taken by workers, not yet stored or dead-lettered", (p) =>
    p.inFlightPayloads())

  return {
    registry,
    payloadsStored: counter("s3ingest_payloads_stored_total", "Payloads inside objects the store confirmed"),
    payloadsDeadLettered: counter("s3ingest_payloads_dead_lettered_total", "Payloads written to dead-letter"),
    payloadsLost: counter(
      "s3ingest_payloads_lost_total",
      "Payloads neither stored nor dead-lettered (dead-letter write failed)"
    ),
    objectsStored: counter("s3ingest_objects_stored_total", "Objects written"),
    /** A stored object's NDJSON bytes before compression, and the bytes written. */
    objectBytes: (raw: number, stored: number): void => {
      objectBytesRaw.inc(raw)
      objectBytesStored.inc(stored)
    },
    uploadDuration: new Prometheus.Histogram({
      name: "s3ingest_upload_duration_seconds",
      help: "Duration of one upload attempt",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers
    }),
    /** `payloads` observations of one request's delivery time, in seconds. */
    observeDelivery: repeatedObservation(deliveryDuration),
    rejected: (reason: RejectionReason): void => rejectedBy[reason].inc(),
    attempt: (outcome: AttemptOutcome): void => attemptsBy[outcome].inc(),
    setBreakerState: (state: BreakerState): void => breakerState.set(state),
    /** Installed by the JobQueue; read at scrape time. */
    setQueueProbe: (next: QueueProbe): void => {
      probe = next
      // A new queue counts from zero; the counter goes on from what it has reported.
      acceptedReported = 0
    },
    journalFsync: (seconds: number): void => journalFsync.observe(seconds),
    journalRecovered: (payloads: number): void => journalRecovered.inc(payloads),
    journalCorrupt: (records: number): void => journalCorrupt.inc(records),
    journalWriteError: (): void => journalWriteErrors.inc(),
    /** Read at scrape time: bytes of the journal's segments. */
    setJournalProbe: (read: () => number): void => {
      journalBytes = read
    },
    setQueueCapacity: (payloads: number, bytes: number): void => {
      capacity = { payloads, bytes }
    },
    /** Prometheus text exposition. */
    render: Effect.promise(() => registry.metrics()),
    contentType: registry.contentType
  } as const
}

export class Metrics extends Effect.Service<Metrics>()("s3-ingest/Metrics", { sync: make }) {}
