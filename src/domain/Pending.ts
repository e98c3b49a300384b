/**
 * An answer that comes later: an admission waiting for the journal's fsync. Whoever asked sets
 * `onAnswer` in the same turn; whoever answers calls it once. The immediate answers, the common
 * case on the request path, stay plain values and allocate nothing of this.
 */
export interface Pending<A> {
  readonly _tag: "Pending"
  onAnswer: ((answer: A) => void) | undefined
}

export const pending = <A>(): Pending<A> => ({ _tag: "Pending", onAnswer: undefined })

export const settlePending = <A>(waiting: Pending<A>, answer: A): void => waiting.onAnswer?.(answer)
