/**
 * The delivery oracle by payload id, as the crash and scale-out tests use it: given every request
 * sent (its ids and final outcome) and every NDJSON line found stored, each acknowledged id must be
 * stored exactly once, no id of a refused request stored, an id whose request got no answer stored
 * at most once, no line stored twice, and no line carry an id never sent.
 */
import type { FoundLine } from "./storedLines.js"

/** acked: 202; refused: an answer saying it was not admitted; unknown: no answer from the service. */
export type Outcome = "acked" | "refused" | "unknown"

export interface SentRequest {
  readonly ids: ReadonlyArray<number>
  /** A label to count by (a phase, a round). */
  readonly group: string
  outcome: Outcome
  /** The last attempt's status, or its error code. */
  answer: string
}

/** Payloads by outcome, and how many of each were found stored (once, more than once, never). */
export interface IdCounts {
  acked: number
  stored: number
  duplicated: number
  lost: number
  refused: number
  refusedStored: number
  unanswered: number
  unansweredStored: number
}

export interface OracleReport {
  readonly total: IdCounts
  readonly byGroup: Map<string, IdCounts>
  /** Each a list of `id … (answer) at [...]` lines; every one must be empty. */
  readonly lost: Array<string>
  readonly duplicated: Array<string>
  readonly refusedStored: Array<string>
  readonly unansweredTwice: Array<string>
  readonly repeatedLines: Array<string>
  readonly foreign: Array<string>
}

const zero = (): IdCounts => ({
  acked: 0,
  stored: 0,
  duplicated: 0,
  lost: 0,
  refused: 0,
  refusedStored: 0,
  unanswered: 0,
  unansweredStored: 0
})

/** Checks `lines` (each a JSON object with a numeric `id`) against `sent`. */
export const checkIds = (sent: ReadonlyArray<SentRequest>, lines: ReadonlyArray<FoundLine>): OracleReport => {
  const byId = new Map<number, SentRequest>()
  for (const request of sent) for (const id of request.ids) byId.set(id, request)
  const where = new Map<number, Array<string>>()
  const lineCount = new Map<string, number>()
  const foreign: Array<string> = []
  for (const { where: at, line } of lines) {
    lineCount.set(line, (lineCount.get(line) ?? 0) + 1)
    let id: unknown
    try {
      id = (JSON.parse(line) as { id?: unknown }).id
    } catch {
      id = undefined
    }
    if (typeof id !== "number" || !byId.has(id)) foreign.push(`${at}: ${line}`)
    else where.set(id, [...(where.get(id) ?? []), at])
  }
  const total = zero()
  const byGroup = new Map<string, IdCounts>()
  const report: OracleReport = {
    total,
    byGroup,
    lost: [],
    duplicated: [],
    refusedStored: [],
    unansweredTwice: [],
    repeatedLines: [...lineCount].filter(([, n]) => n > 1).map(([line, n]) => `${n}× ${line}`),
    foreign
  }
  for (const request of sent) {
    const group = byGroup.get(request.group) ?? zero()
    byGroup.set(request.group, group)
    const count = (field: keyof IdCounts) => {
      group[field]++
      total[field]++
    }
    for (const id of request.ids) {
      const at = where.get(id) ?? []
      const detail = `id ${id} (${request.group}, answer ${request.answer}) at ${JSON.stringify(at)}`
      if (request.outcome === "acked") {
        count("acked")
        if (at.length === 1) count("stored")
        if (at.length === 0) {
          count("lost")
          report.lost.push(detail)
        }
        if (at.length > 1) {
          count("duplicated")
          report.duplicated.push(detail)
        }
      } else if (request.outcome === "refused") {
        count("refused")
        if (at.length > 0) {
          count("refusedStored")
          report.refusedStored.push(detail)
        }
      } else {
        count("unanswered")
        if (at.length > 0) count("unansweredStored")
        if (at.length > 1) report.unansweredTwice.push(detail)
      }
    }
  }
  return report
}
