/**
 * What each segment still holds for recovery: lines not yet in a settled batch, and batch records
 * not yet settled. A segment holding neither can go. Segments go oldest first, so a settled
 * record never outlives the batch record it settles, and an unsettled batch record keeps the
 * segments of its lines.
 *
 * Record ids grow in the order records are written, so the segment of a record is found by its id
 * among the segments' first ids; records copied into a later segment (from a corrupt one at
 * start) are looked up in `moved` first.
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
}

export interface Segments {
  readonly list: () => ReadonlyArray<Segment>
  readonly add: (segment: Segment) => void
  /** The segment holding record `id`. */
  readonly of: (id: number) => Segment | undefined
  /** Record `id` now lives in `segment`. */
  readonly moved: (id: number, segment: Segment) => void
  /** A batch record and the lines it names are settled. */
  readonly settle: (batch: number, spans: ReadonlyArray<Span>) => void
  /** Takes the oldest segments that hold nothing live, short of `current`. */
  readonly takeRemovable: (current: Segment | undefined) => ReadonlyArray<Segment>
  readonly bytes: () => number
}

export const makeSegments = (): Segments => {
  let list: Array<Segment> = []
  const movedTo = new Map<number, Segment>()

  const of = (id: number): Segment | undefined => {
    const moved = movedTo.get(id)
    if (moved !== undefined) return moved
    // The newest segment whose first id is at most `id`: segments are few, and a segment that
    // holds no record yet (Infinity) is passed over.
    for (let i = list.length - 1; i >= 0; i--) if (list[i]!.firstId <= id) return list[i]
    return undefined
  }

  return {
    list: () => list,
    add: (segment) => {
      list.push(segment)
    },
    of,
    moved: (id, segment) => {
      movedTo.set(id, segment)
    },
    settle: (batch, spans) => {
      for (const span of spans) {
        const segment = of(span.record)
        if (segment !== undefined) segment.liveLines -= span.count
      }
      const holder = of(batch)
      if (holder !== undefined) holder.liveBatches--
    },
    takeRemovable: (current) => {
      let n = 0
      while (n < list.length && list[n] !== current && list[n]!.liveLines <= 0 && list[n]!.liveBatches <= 0) n++
      if (n === 0) return []
      const removed = list.slice(0, n)
      list = list.slice(n)
      if (movedTo.size > 0) for (const [id, segment] of movedTo) if (removed.includes(segment)) movedTo.delete(id)
      return removed
    },
    bytes: () => {
      let total = 0
      for (const segment of list) total += segment.bytes
      return total
    }
  }
}
