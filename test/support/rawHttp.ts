/**
 * HTTP below the client library: a request head written as given on a plain TCP socket (no body
 * unless the head carries one, nothing added), and the first complete answer read back. For
 * what a client library will not do, such as announcing a body and holding it back.
 */
import { connect } from "node:net"

export interface RawAnswer {
  readonly status: number
  /** The status line, e.g. `HTTP/1.1 400 Bad Request`. */
  readonly statusLine: string
  /** Lower-cased names. */
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

/** The first response in `bytes`, once its head and its `Content-Length` of body are all there. */
const parseAnswer = (bytes: Buffer): RawAnswer | undefined => {
  const end = bytes.indexOf("\r\n\r\n")
  if (end < 0) return undefined
  const [statusLine = "", ...lines] = bytes.subarray(0, end).toString("latin1").split("\r\n")
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(":")
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  const length = Number(headers["content-length"] ?? "0")
  const body = bytes.subarray(end + 4)
  if (body.length < length) return undefined
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? "0")
  return { status, statusLine, headers, body: body.subarray(0, length).toString("utf8") }
}

/**
 * Writes `head` (which should end with a blank line) to 127.0.0.1:`port`, keeps the socket open
 * without writing more, and resolves with the first complete answer; rejects, saying what arrived,
 * when none is complete within `timeoutMs` or the connection ends first.
 */
export const rawExchange = (port: number, head: string, timeoutMs = 5_000): Promise<RawAnswer> =>
  new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port })
    let received = Buffer.alloc(0)
    let settled = false
    const settle = (outcome: RawAnswer | Error) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      if (outcome instanceof Error) reject(outcome)
      else resolve(outcome)
    }
    const got = () => JSON.stringify(received.toString("latin1"))
    const timer = setTimeout(() => settle(new Error(`no complete answer within ${timeoutMs} ms; got ${got()}`)), timeoutMs)
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk])
      const answer = parseAnswer(received)
      if (answer !== undefined) settle(answer)
    })
    socket.on("error", (error) => settle(new Error(`socket error ${error.message}; got ${got()}`)))
    socket.on("close", () => settle(new Error(`connection closed before a complete answer; got ${got()}`)))
    socket.write(head, "latin1")
  })
