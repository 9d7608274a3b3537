import * as Framing from "@effect-ipc/core/Framing"
import * as Conformance from "@effect-ipc/testing/Conformance"
import * as Nng from "@effect-ipc/transport-nng"
import { afterAll } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { unusedPort } from "./fixtures/ports.ts"

const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-nng-conf-"))
afterAll(() => Fs.rmSync(dir, { recursive: true, force: true }))
let n = 0

/** True when nothing listens on `port` (a bind in a child process succeeds). */
const isFree = (port: number): boolean =>
  ChildProcess.spawnSync(process.execPath, [
    "-e",
    `require('net').createServer().once('error',()=>process.exit(1)).listen(${port},'127.0.0.1',function(){this.close()})`
  ]).status === 0

const [ephemeralLow] = Fs.readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number)
let picked = 0

/**
 * A port for the suite's nng+tcp/ws addresses, which it needs before it listens: below the
 * kernel's ephemeral range, where no port-0 bind and no outgoing connection of a test running
 * beside this one can take it; spread by pid, and checked free when picked.
 */
const suitePort = (): number => {
  const low = 10_000
  const span = (ephemeralLow ?? 0) - low
  if (span < 1000) return unusedPort()
  for (let tries = 0; tries < 50; tries++) {
    const port = low + ((process.pid * 7919 + picked++ * 131) % span)
    if (isFree(port)) return port
  }
  return unusedPort()
}
// raw-stream cases: not applicable (the descriptor says why); garbage floods are flood.test.ts's
const peer = { module: "@effect-ipc/transport-nng", export: "descriptor" }

const existing = (...paths: ReadonlyArray<string>) => paths.filter((path) => Fs.existsSync(path))

Conformance.suite({
  name: "nng+ipc://",
  descriptor: Nng.descriptor,
  scheme: "nng+ipc",
  peer,
  address: () => `nng+ipc://${dir}/s${n++}.ipc`,
  maxFrameSize: Framing.DEFAULT_MAX_FRAME_SIZE,
  sendsBatches: true,
  residue: (address) => existing(address.slice("nng+ipc://".length))
})

Conformance.suite({
  name: "nng+tcp://",
  descriptor: Nng.descriptor,
  scheme: "nng+tcp",
  peer,
  address: () => `nng+tcp://127.0.0.1:${suitePort()}`,
  maxFrameSize: Framing.DEFAULT_MAX_FRAME_SIZE,
  sendsBatches: true
})

Conformance.suite({
  name: "nng+ws://",
  descriptor: Nng.descriptor,
  scheme: "nng+ws",
  peer,
  address: () => `nng+ws://127.0.0.1:${suitePort()}/conformance`,
  maxFrameSize: Framing.DEFAULT_MAX_FRAME_SIZE,
  sendsBatches: true
})

Conformance.suite({
  name: "nng+inproc://",
  descriptor: Nng.descriptor,
  scheme: "nng+inproc",
  address: () => `nng+inproc://conformance-${n++}`,
  maxFrameSize: Framing.DEFAULT_MAX_FRAME_SIZE,
  sendsBatches: true
})
