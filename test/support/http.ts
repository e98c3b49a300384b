/**
 * The tests' HTTP client: one request with full control of the method, path and headers (fetch
 * adds its own), on a connection of its own unless an agent is given, so no socket of the test's
 * pool holds the service's listener open during a drain.
 */
import { type Agent, type IncomingHttpHeaders, request } from "node:http"

export interface Reply {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly text: string
}

export interface RequestSpec {
  readonly method?: string
  readonly path?: string
  /** Sent as given; `content-length` is added for a body unless present. */
  readonly headers?: Readonly<Record<string, string>>
  readonly body?: string | Buffer
  readonly agent?: Agent
}

/** One request to 127.0.0.1:`port` (default `POST /v1/payloads`); rejects when no answer comes. */
export const call = (port: number, spec: RequestSpec = {}): Promise<Reply> =>
  new Promise((resolve, reject) => {
    const body = spec.body === undefined
      ? undefined
      : typeof spec.body === "string"
      ? Buffer.from(spec.body, "utf8")
      : spec.body
    const headers: Record<string, string> = { ...spec.headers }
    if (body !== undefined && !Object.keys(headers).some((name) => name.toLowerCase() === "content-length")) {
      headers["content-length"] = String(body.length)
    }
    const req = request({
      host: "127.0.0.1",
      port,
      method: spec.method ?? "POST",
      path: spec.path ?? "/v1/payloads",
      headers,
      agent: spec.agent ?? false
    }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (chunk: Buffer) => chunks.push(chunk))
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString("utf8") }))
      res.on("error", reject)
    })
    req.on("error", reject)
    req.end(body)
  })

/** A JSON POST to `/v1/payloads`. */
export const postJsonTo = (port: number, body: string, spec: Omit<RequestSpec, "body"> = {}) =>
  call(port, { ...spec, body, headers: { "content-type": "application/json", ...spec.headers } })
