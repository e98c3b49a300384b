// Small helpers the benchmark drivers share.
import { createServer } from "node:net"

/** A free loopback port. */
export const freePort = () =>
  new Promise((done, fail) => {
    const probe = createServer().once("error", fail)
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address()
      probe.close(() => done(port))
    })
  })

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
