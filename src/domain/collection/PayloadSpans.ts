/**
 * Where each payload's element lies in the request body: [start, end) byte offsets, in order.
 * A view over the validator's flat array of offsets, so nothing is allocated per payload.
 */
export class PayloadSpans {
  constructor(private readonly offsets: ReadonlyArray<number>) {}

  get count(): number {
    return this.offsets.length >> 1
  }

  /** Where payload `k`'s element starts. */
  start(k: number): number {
    return this.offsets[2 * k]!
  }

  /** Just after payload `k`'s element. */
  end(k: number): number {
    return this.offsets[2 * k + 1]!
  }
}
