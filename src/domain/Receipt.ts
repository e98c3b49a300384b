/**
 * A delivery receipt (`?ack=stored`): a request that waits until every one of its payloads is in
 * an object the store confirmed. Its lines carry it through the queue (a job, or both parts of a
 * split job), and every batch holding some of them reports to it when it is stored; the request is
 * answered 200 with the keys, or 202 if the receipt cannot be given (deadline, dead letter, drain).
 */
export type ReceiptAnswer = (count: number, keys: ReadonlyArray<string> | undefined) => void

export interface Receipt {
  readonly count: number
  /** Payloads not yet in a stored object. */
  remaining: number
  readonly keys: Array<string>
  /** When to give up and answer 202; set when the lines are committed. */
  deadline: number
  /** Undefined once answered, or once the client went away. */
  answer: ReceiptAnswer | undefined
}

export const makeReceipt = (count: number, answer: ReceiptAnswer): Receipt => ({
  count,
  remaining: count,
  keys: [],
  deadline: Infinity,
  answer
})

/** Answers the receipt once: with its keys when every payload is stored, else 202. */
export const answerReceipt = (receipt: Receipt, stored: boolean): void => {
  const answer = receipt.answer
  if (answer === undefined) return
  receipt.answer = undefined
  answer(receipt.count, stored ? receipt.keys : undefined)
}

/** `count` of the receipt's payloads are in the object `key`, which the store confirmed. */
export const receiptStored = (receipt: Receipt, count: number, key: string): void => {
  if (receipt.answer === undefined) return
  if (!receipt.keys.includes(key)) receipt.keys.push(key)
  receipt.remaining -= count
  if (receipt.remaining <= 0) answerReceipt(receipt, true)
}
