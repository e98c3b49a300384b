/**
 * What each segment still holds for recovery, record by record: the lines of each line record not
 * yet in a settled batch, and each batch record not yet settled. A segment holding neither can go.
 * Segments go oldest first, so a settled record never outlives the batch record it settles, and an
 * unsettled batch record keeps the segments of its lines.
 *
 * Record ids grow in the order records are written (a batch record takes its id when it is
 * staged), so the segment of a record is found among the segments' first ids, and its live count
 * at `id - firstId` of the segment's array. A record copied into a later segment (out of a damaged
 * one at start, or by compaction) is looked up in `moved` first.
 */
import type { Span } from "../../domain/journal/Records.js"

export interface Segment {
  readonly seq: number
  readonly path: string
  /** Id of the first record written to it; Infinity while it holds none. */
  firstId: number
  /** Bytes on disk, up to the last durable write. */
  bytes: number
  liveLines: number
  liveBatches: number
  /** Live count of record `firstId + i` at `i`: its unsettled lines, or 1 for an unsettled batch. */
  live: Int32Array
}

export type RecordKind = "lines" | "batch"

export const newSegment = (seq: number, path: string, bytes: number): Segment => ({
  seq,
  path,
  firstId: Infinity,
  bytes,
  liveLines: 0,
  liveBatches: 0,
  live: new Int32Array(0)
})

const add = (segment: Segment, kind: RecordKind, count: number) => {
  if (kind === "lines") segment.liveLines += count
  else segment.liveBatches += count
}

/** Sets the live count of record `id`, written to `segment`, and counts it. */
export const setLive = (segment: Segment, id: number, kind: RecordKind, count: number): void => {
  if (segment.firstId === Infinity) segment.firstId = id
  const at = id - segment.firstId
  if (at >= segment.live.length) {
    const grown = new Int32Array(Math.max(1024, segment.live.length * 2, at + 1))
    grown.set(segment.live)
    segment.live = grown
  }
  segment.live[at] = count
  add(segment, kind, count)
}

export interface Segments {
  readonly list: () => ReadonlyArray<Segment>
  readonly add: (segment: Segment) => void
  /** The live count of record `id`. */
  readonly liveOf: (id: number) => number
  /** The segment whose copy of record `id` counts. */
  readonly where: (id: number) => Segment | undefined
  /**
   * Record `id` is now (also) written in `to`: its live count, taken from `from` if it was counted
   * there, or `count` if it was not, is counted in `to` from now on.
   */
  readonly relocate: (id: number, kind: RecordKind, from: Segment | undefined, to: Segment, count: number) => void
  /** A batch record and the lines it names are settled. */
  readonly settle: (batch: number, spans: ReadonlyArray<Span>) => void
  /** Takes the oldest segments that hold nothing live, short of `current`. */
  readonly takeRemovable: (current: Segment | undefined) => ReadonlyArray<Segment>
  readonly bytes: () => number
}

export const makeSegments = (): Segments => {
  let list: Array<Segment> = []
  const moved = new Map<number, { segment: Segment; live: number }>()

  const holder = (id: number): Segment | undefined => {
    // The newest segment whose first id is at most `id`: segments are few, and a segment that
    // holds no record yet (Infinity) is passed over.
    for (let i = list.length - 1; i >= 0; i--) if (list[i]!.firstId <= id) return list[i]
    return undefined
  }

  const liveOf = (id: number): number => {
    const entry = moved.get(id)
    if (entry !== undefined) return entry.live
    const segment = holder(id)
    return segment === undefined ? 0 : segment.live[id - segment.firstId] ?? 0
  }

  const release = (id: number, kind: RecordKind, count: number) => {
    const entry = moved.get(id)
    if (entry !== undefined) {
      entry.live -= count
      add(entry.segment, kind, -count)
      return
    }
    const segment = holder(id)
    if (segment === undefined) return
    const at = id - segment.firstId
    if (at < segment.live.length) segment.live[at]! -= count
    add(segment, kind, -count)
  }

  return {
    list: () => list,
    add: (segment) => {
      list.push(segment)
    },
    liveOf,
    where: (id) => moved.get(id)?.segment ?? holder(id),
    relocate: (id, kind, from, to, count) => {
      let live = count
      if (from !== undefined) {
        live = liveOf(id)
        release(id, kind, live)
      }
      moved.set(id, { segment: to, live })
      add(to, kind, live)
    },
    settle: (batch, spans) => {
      for (const span of spans) release(span.record, "lines", span.count)
      release(batch, "batch", 1)
    },
    takeRemovable: (current) => {
      let n = 0
      while (n < list.length && list[n] !== current && list[n]!.liveLines <= 0 && list[n]!.liveBatches <= 0) n++
      if (n === 0) return []
      const removed = list.slice(0, n)
      list = list.slice(n)
      for (const [id, entry] of moved) if (removed.includes(entry.segment)) moved.delete(id)
      return removed
    },
    bytes: () => {
      let total = 0
      for (const segment of list) total += segment.bytes
      return total
    }
  }
}
