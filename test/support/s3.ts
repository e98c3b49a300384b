/**
 * S3 helpers for tests: an SDK client pointed at the test s3rver (to read back what the code
 * under test wrote), and a "hanging S3" — a loopback TCP server that accepts connections,
 * reads the request and never answers, recording when each client socket closes.
 */
import {
  GetObjectCommand,
  type GetObjectCommandOutput,
  ListObjectsCommand,
  S3Client
} from "@aws-sdk/client-s3"
import { createServer, type Socket } from "node:net"

/** s3rver's fixed credentials. */
export const S3RVER_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" } as const

/** A client for reading back from s3rver: path style, no SDK retries, checksums only when required. */
export const makeTestS3Client = (endpoint: string): S3Client => {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true"
  return new S3Client({
    region: "us-east-1",
    endpoint,
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
    // The oracle reads what the service wrote; a loaded s3rver may drop a socket, so retry.
    maxAttempts: 5,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED"
  })
}

/**
 * Every key under `prefix` (all pages), sorted. Pages are asked for with ListObjects' `Marker`
 * (the last key seen): s3rver 3.7 makes ListObjectsV2's continuation token with a cipher that
 * OpenSSL 3 no longer offers, and answers a second page 500 InternalError.
 */
export const listKeys = async (client: S3Client, bucket: string, prefix: string): Promise<Array<string>> => {
  const keys: Array<string> = []
  let marker: string | undefined
  for (;;) {
    const page = await client.send(
      new ListObjectsCommand({ Bucket: bucket, Prefix: prefix, ...(marker === undefined ? {} : { Marker: marker }) })
    )
    const found = (page.Contents ?? []).flatMap((object) => object.Key === undefined ? [] : [object.Key])
    keys.push(...found)
    if (page.IsTruncated !== true || found.length === 0) break
    marker = found[found.length - 1]
  }
  return keys.sort()
}

export interface StoredObject {
  readonly body: Uint8Array
  readonly contentType: string | undefined
  readonly contentEncoding: string | undefined
}

export const getObject = async (client: S3Client, bucket: string, key: string): Promise<StoredObject> => {
  const output: GetObjectCommandOutput = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }))
  if (output.Body === undefined) throw new Error(`object ${key} has no body`)
  return {
    body: await output.Body.transformToByteArray(),
    contentType: output.ContentType,
    contentEncoding: output.ContentEncoding
  }
}

export interface HangingConnection {
  readonly socket: Socket
  /** The first bytes the client sent (the request line and headers), as latin1. */
  readonly firstData: Promise<string>
  /** What `firstData` holds once it arrived; "" until then. */
  readonly received: () => string
  /** Resolves with `Date.now()` when the accepted socket emits 'close'. */
  readonly closed: Promise<number>
}

export interface HangingServer {
  readonly port: number
  readonly endpoint: string
  readonly connections: ReadonlyArray<HangingConnection>
  /** The first connection accepted (waits for it). */
  readonly firstConnection: Promise<HangingConnection>
  /** Destroys every accepted socket and closes the listener. */
  readonly close: () => Promise<void>
}

/** A loopback "S3" that accepts connections and never answers. */
export const startHangingServer = (): Promise<HangingServer> =>
  new Promise((resolve, reject) => {
    const connections: Array<HangingConnection> = []
    let firstAccepted: (connection: HangingConnection) => void = () => {}
    const firstConnection = new Promise<HangingConnection>((done) => {
      firstAccepted = done
    })
    const server = createServer((socket) => {
      let received = ""
      const connection: HangingConnection = {
        socket,
        firstData: new Promise((done) =>
          socket.once("data", (chunk: Buffer) => {
            received = chunk.toString("latin1")
            done(received)
          })
        ),
        received: () => received,
        closed: new Promise((done) => socket.once("close", () => done(Date.now())))
      }
      socket.on("error", () => {}) // a reset from the client is what the tests provoke
      connections.push(connection)
      if (connections.length === 1) firstAccepted(connection)
    })
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      if (typeof address !== "object" || address === null) {
        reject(new Error("hanging server has no port"))
        return
      }
      resolve({
        port: address.port,
        endpoint: `http://127.0.0.1:${address.port}`,
        connections,
        firstConnection,
        close: () =>
          new Promise<void>((done) => {
            for (const connection of connections) connection.socket.destroy()
            server.close(() => done())
          })
      })
    })
  })
