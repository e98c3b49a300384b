/**
 * Waiting in end-to-end tests: on a condition, under a deadline. A test never sleeps and then
 * asserts; `sleep` paces a load or a poll, nothing else.
 */

export const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms))

/**
 * Polls `probe` every `everyMs` until it returns a value other than `undefined` (return `true`
 * for a plain condition), and resolves with it; fails naming `what` after `timeoutMs`.
 */
export const waitFor = async <A>(
  what: string,
  probe: () => A | undefined | Promise<A | undefined>,
  timeoutMs = 10_000,
  everyMs = 25
): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(everyMs)
  }
}
