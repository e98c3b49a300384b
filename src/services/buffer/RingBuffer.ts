/**
 * The admission buffer's FIFO of jobs: a bounded circular array. A slot is cleared as its job
 * leaves, so a job taken long ago keeps nothing alive (the linked list behind Effect's
 * `Queue.bounded` left dequeued nodes pointing at their successors, and V8 promoted whole chains
 * of them). The head can be replaced (a job the batch took part of) and so can the tail (a
 * request appended to the job accepted in the same millisecond).
 */
export class RingBuffer<A> {
  private readonly slots: Array<A | undefined>
  private head = 0
  private size = 0

  constructor(private readonly bound: number) {
    this.slots = new Array<A | undefined>(bound)
  }

  get length(): number {
    return this.size
  }

  /** Adds at the tail; false when full. */
  push(element: A): boolean {
    if (this.size === this.bound) return false
    this.slots[this.slot(this.size)] = element
    this.size++
    return true
  }

  /** Removes and returns the head. */
  shift(): A | undefined {
    if (this.size === 0) return undefined
    const element = this.slots[this.head]
    this.slots[this.head] = undefined
    this.head = this.head + 1 === this.bound ? 0 : this.head + 1
    this.size--
    return element
  }

  first(): A | undefined {
    return this.size === 0 ? undefined : this.slots[this.head]
  }

  last(): A | undefined {
    return this.size === 0 ? undefined : this.slots[this.slot(this.size - 1)]
  }

  /** Puts `element` in the place of the head; false when there is none. */
  replaceFirst(element: A): boolean {
    if (this.size === 0) return false
    this.slots[this.head] = element
    return true
  }

  /** Puts `element` in the place of the tail; false when there is none. */
  replaceLast(element: A): boolean {
    if (this.size === 0) return false
    this.slots[this.slot(this.size - 1)] = element
    return true
  }

  private slot(offset: number): number {
    const at = this.head + offset
    return at < this.bound ? at : at - this.bound
  }
}
