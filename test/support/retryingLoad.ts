/**
 * Keep-alive clients that honour 503 + Retry-After, for tests behind a load balancer: `clients`
 * loops, each with its own `http.Agent({ keepAlive: true, maxSockets: 1 })`, posting one collection
 * after another to 127.0.0.1:`port`. A 503 means the collection was not admitted (a draining or
 * starting replica, or HAProxy with no server up), so the loop waits `Retry-After` (capped) and
 * sends the SAME body again. Anything else ends the request: a status, or an error when no answer
 * came — such a request is never sent again, since it may have been admitted. The caller keeps
 * the ledger through `onAttempt`, which sees every attempt.
 */
import { Agent } from "node:http"
import { postJsonTo } from "./http.js"
import { sleep } from "./wait.js"

export interface Attempt {
  readonly client: number
  /** The status of the answer; undefined when none came (socket refused, reset, closed). */
  readonly status: number | undefined
  /** The error's code (or message) when no answer came. */
  readonly error: string | undefined
  /** The 503's `Retry-After` in seconds, when it had a valid one. */
  readonly retryAfterSeconds: number | undefined
  readonly at: number
}

export interface RetryingLoadOptions<A> {
  readonly clients: number
  readonly port: number
  /** The next collection: what the caller wants back with each attempt, and the body to post. */
  readonly next: (client: number) => { readonly tag: A; readonly body: string }
  readonly onAttempt: (tag: A, attempt: Attempt) => void
  /** The longest wait before a retry, whatever `Retry-After` says. */
  readonly maxRetryWaitMs: number
  /** The wait before a retry when a 503 has no `Retry-After` (HAProxy's own 503 has none). */
  readonly defaultRetryWaitMs?: number
  /** Pause after an error or a status other than 202 and 503, so a dead frontend is not spun on. */
  readonly pauseAfterFailureMs?: number
}

export interface RetryingLoad {
  /** Attempts made so far. */
  readonly attempts: () => number
  /** Ends every loop after its current attempt (a pending retry is abandoned) and closes the sockets. */
  readonly stop: () => Promise<void>
}

const retryAfterOf = (header: string | Array<string> | undefined): number | undefined => {
  const text = Array.isArray(header) ? header[0] : header
  return text !== undefined && /^\d+$/.test(text.trim()) ? Number(text.trim()) : undefined
}

export const startRetryingLoad = <A>(options: RetryingLoadOptions<A>): RetryingLoad => {
  let running = true
  let attempts = 0
  const agents: Array<Agent> = []
  const loop = async (client: number) => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    agents.push(agent)
    while (running) {
      const { tag, body } = options.next(client)
      for (;;) {
        attempts++
        let status: number | undefined
        let error: string | undefined
        let retryAfterSeconds: number | undefined
        try {
          const reply = await postJsonTo(options.port, body, { agent })
          status = reply.status
          retryAfterSeconds = status === 503 ? retryAfterOf(reply.headers["retry-after"]) : undefined
        } catch (failure) {
          error = (failure as NodeJS.ErrnoException).code ?? String(failure)
        }
        options.onAttempt(tag, { client, status, error, retryAfterSeconds, at: Date.now() })
        if (status === 503 && running) {
          const wantedMs = retryAfterSeconds === undefined ? options.defaultRetryWaitMs ?? 1000 : retryAfterSeconds * 1000
          await sleep(Math.min(options.maxRetryWaitMs, wantedMs))
          if (running) continue
        } else if (status !== 202) {
          await sleep(options.pauseAfterFailureMs ?? 10)
        }
        break
      }
    }
  }
  const loops = Promise.all(Array.from({ length: options.clients }, (_, c) => loop(c)))
  return {
    attempts: () => attempts,
    stop: async () => {
      running = false
      await loops
      for (const agent of agents) agent.destroy()
    }
  }
}
