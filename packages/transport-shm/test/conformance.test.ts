import * as Conformance from "@effect-ipc/core/testing/Conformance"
import * as Shm from "@effect-ipc/transport-shm"
import * as Fs from "node:fs"

let n = 0

/** While open, a listener shows as its abstract socket; every segment of this process is in `/dev/shm`. */
const residue = (address: string): ReadonlyArray<string> => {
  const name = address.slice("shm://".length)
  const sockets = Fs.readFileSync("/proc/net/unix", "utf8")
    .split("\n")
    .filter((line) => line.endsWith(`@${Shm.ShmTransport.controlAddress(name).slice("unix:@".length)}`))
    .map((line) => line.slice(line.lastIndexOf(" ") + 1))
  const segments = Fs.readdirSync("/dev/shm").filter((s) => s.includes(`-${process.pid.toString(36)}-`))
  return [...new Set(sockets), ...segments.map((s) => `/dev/shm/${s}`)]
}

Conformance.suite({
  name: "shm://",
  descriptor: Shm.descriptor,
  peer: { module: "@effect-ipc/transport-shm", export: "descriptor" },
  address: () => `shm://conformance-${process.pid}-${n++}`,
  maxFrameSize: Shm.ShmChannel.DEFAULT_MAX_MESSAGE_SIZE,
  residue
})
