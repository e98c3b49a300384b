/**
 * A steady load of keep-alive clients for end-to-end tests: `clients` loops, each with its own
 * `http.Agent({ keepAlive: true, maxSockets: 1 })`, posting one collection after another to
 * 127.0.0.1 until stopped. The caller is told every attempt's outcome (a status, or the error when
 * no answer came) and keeps the ledger.
 *
 * A request that got no answer is never sent again, since it may have been admitted. With
 * `retry503`, a 503 (not admitted: a draining or starting replica, or a load balancer with no
 * server up) is sent again with the same body after `Retry-After` (capped); without it, every
 * request is sent once.
 */
import { Agent } from "node:http"
import { postJsonTo } from "./http.js"
import { sleep } from "./wait.js"

export interface LoadResult {
  readonly client: number
  /** The status of the answer; undefined when none came (socket refused, reset, closed). */
  readonly status: number | undefined
  /** The error's code (or message) when no answer came. */
  readonly error: string | undefined
  /** A 503's `Retry-After` in seconds, when it had a valid one. */
  readonly retryAfterSeconds: number | undefined
  /** When the answer (or the error) came. */
  readonly at: number
}

export interface LoadOptions<A> {
  readonly clients: number
  /** Read before each request, so a restarted service on a new port is followed. */
  readonly port: () => number
  /** The next collection: what the caller wants back with each result, and the body to post. */
  readonly next: (client: number) => { readonly tag: A; readonly body: string }
  /** Every attempt's outcome; a retried request is reported once per attempt. */
  readonly onResult: (tag: A, result: LoadResult) => void
  /** Pause after an error or a status other than 202 (and a retried 503), so a dead service is not spun on. */
  readonly pauseAfterRefusalMs?: number
  /** Send a 503's body again after its `Retry-After`, at most `maxWaitMs` (`defaultWaitMs` without one). */
  readonly retry503?: { readonly maxWaitMs: number; readonly defaultWaitMs?: number }
}

export interface Load {
  /** Requests sent so far, retries included. */
  readonly sent: () => number
  /** Ends every loop after its current attempt (a pending retry is abandoned) and closes the sockets. */
  readonly stop: () => Promise<void>
}

const retryAfterOf = (header: string | Array<string> | undefined): number | undefined => {
  const text = Array.isArray(header) ? header[0] : header
  return text !== undefined && /^\d+$/.test(text.trim()) ? Number(text.trim()) : undefined
}

export const startKeepAliveLoad = <A>(options: LoadOptions<A>): Load => {
  let running = true
  let sent = 0
  const agents: Array<Agent> = []
  const retry = options.retry503

  /** One attempt: its outcome, reported. */
  const attempt = async (client: number, agent: Agent, tag: A, body: string): Promise<LoadResult> => {
    sent++
    let result: LoadResult
    try {
      const reply = await postJsonTo(options.port(), body, { agent })
      const retryAfterSeconds = reply.status === 503 ? retryAfterOf(reply.headers["retry-after"]) : undefined
      result = { client, status: reply.status, error: undefined, retryAfterSeconds, at: Date.now() }
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      result = { client, status: undefined, error: code ?? String(error), retryAfterSeconds: undefined, at: Date.now() }
    }
    options.onResult(tag, result)
    return result
  }

  const loop = async (client: number) => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    agents.push(agent)
    while (running) {
      const { tag, body } = options.next(client)
      let result = await attempt(client, agent, tag, body)
      while (retry !== undefined && result.status === 503 && running) {
        const seconds = result.retryAfterSeconds
        await sleep(Math.min(retry.maxWaitMs, seconds === undefined ? retry.defaultWaitMs ?? 1000 : seconds * 1000))
        if (!running) break
        result = await attempt(client, agent, tag, body)
      }
      if (result.status !== 202 && !(retry !== undefined && result.status === 503)) {
        await sleep(options.pauseAfterRefusalMs ?? 10)
      }
    }
  }
  const loops = Promise.all(Array.from({ length: options.clients }, (_, c) => loop(c)))
  return {
    sent: () => sent,
    stop: async () => {
      running = false
      await loops
      for (const agent of agents) agent.destroy()
    }
  }
}
