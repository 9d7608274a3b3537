import * as Conformance from "@effect-ipc/testing/Conformance"
import * as Shm from "@effect-ipc/transport-shm"
import { afterAll } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"

let n = 0

// peers killed with kill -9 leave their listeners' socket files in the rendezvous directory
afterAll(() => Effect.runPromise(Effect.ignore(Shm.SegmentGc.collect({ prefix: `conformance-${process.pid}-` }))))

/** While open, a listener shows as its socket file in the rendezvous directory; every segment of this process is in `/dev/shm`. */
const residue = (address: string): ReadonlyArray<string> => {
  const socket = Shm.ShmTransport.controlPath(address.slice("shm://".length))
  const sockets = Fs.existsSync(socket) ? [socket] : []
  const segments = Fs.readdirSync("/dev/shm").filter((s) => s.includes(`-${process.pid.toString(36)}-`))
  return [...sockets, ...segments.map((s) => `/dev/shm/${s}`)]
}

Conformance.suite({
  name: "shm://",
  descriptor: Shm.descriptor,
  peer: { module: "@effect-ipc/transport-shm", export: "descriptor" },
  address: () => `shm://conformance-${process.pid}-${n++}`,
  maxFrameSize: Shm.ShmChannel.DEFAULT_MAX_MESSAGE_SIZE,
  sendsBatches: true,
  residue
})
