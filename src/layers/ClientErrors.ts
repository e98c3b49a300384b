/**
 * Answers to the requests Node's HTTP parser refuses before the edge sees them: a request that did
 * not arrive within REQUEST_TIMEOUT_MS (408), headers too large (431), a malformed request (400).
 * Each is a JSON error and `Connection: close`, written straight to the socket; a socket already
 * answering, or reset by its client, is only closed.
 */
import { STATUS_CODES } from "node:http"
import type { Socket } from "node:net"
import { JSON_TYPE } from "../domain/RequestHeaders.js"

/** Node's `socket._httpMessage`: the response in progress on the socket, if any. */
const responseOnSocket = (socket: Socket): { readonly headersSent?: boolean } | undefined =>
  (socket as Socket & { readonly _httpMessage?: { readonly headersSent?: boolean } })._httpMessage

/** A `clientError` listener; `refused` is told each answer's status, reason and message. */
export const answerClientError =
  (refused: (status: number, reason: string, message: string) => void) =>
  (error: NodeJS.ErrnoException, socket: Socket): void => {
    const response = responseOnSocket(socket)
    if (!socket.writable || response?.headersSent === true) return void socket.destroy()
    const status = error.code === "ERR_HTTP_REQUEST_TIMEOUT"
      ? 408
      : error.code === "HPE_HEADER_OVERFLOW"
      ? 431
      : error.code === "ECONNRESET"
      ? 0
      : 400
    if (status === 0) return void socket.destroy()
    const message = STATUS_CODES[status]?.toLowerCase() ?? "bad request"
    refused(status, status === 408 ? "timeout" : error.code ?? "malformed request", message)
    const body = JSON.stringify({ error: message })
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${JSON_TYPE}\r\nContent-Length: ${
        Buffer.byteLength(body)
      }\r\nConnection: close\r\n\r\n${body}`
    )
  }
