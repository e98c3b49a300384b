/**
 * A steady load of keep-alive clients for end-to-end tests: `clients` loops, each with its own
 * `http.Agent({ keepAlive: true, maxSockets: 1 })`, posting one collection after another to
 * 127.0.0.1 until stopped. A request is sent once and never again, whatever happens to it: the
 * caller is told its outcome (a status, or the error when no answer came) and keeps the ledger.
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
  readonly sentAt: number
}

export interface LoadOptions<A> {
  readonly clients: number
  /** Read before each request, so a restarted service on a new port is followed. */
  readonly port: () => number
  /** The next collection: what the caller wants back with the result, and the body to post. */
  readonly next: (client: number) => { readonly tag: A; readonly body: string }
  readonly onResult: (tag: A, result: LoadResult) => void
  /** Pause after anything but a 202, so a dead or starting service is not spun on. */
  readonly pauseAfterRefusalMs?: number
}

export interface Load {
  /** Requests sent so far. */
  readonly sent: () => number
  /** Ends every loop after its current request and closes the clients' sockets. */
  readonly stop: () => Promise<void>
}

export const startKeepAliveLoad = <A>(options: LoadOptions<A>): Load => {
  let running = true
  let sent = 0
  const agents: Array<Agent> = []
  const loop = async (client: number) => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    agents.push(agent)
    while (running) {
      const { tag, body } = options.next(client)
      const sentAt = Date.now()
      sent++
      let result: LoadResult
      try {
        const reply = await postJsonTo(options.port(), body, { agent })
        result = { client, status: reply.status, error: undefined, sentAt }
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code
        result = { client, status: undefined, error: code ?? String(error), sentAt }
      }
      options.onResult(tag, result)
      if (result.status !== 202) await sleep(options.pauseAfterRefusalMs ?? 10)
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
