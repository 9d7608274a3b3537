import * as Framing from "@effect-ipc/core/Framing"
import * as Conformance from "@effect-ipc/core/testing/Conformance"
import * as Nng from "@effect-ipc/transport-nng"
import { afterAll } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { freePort } from "./fixtures/ports.ts"

const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-nng-conf-"))
afterAll(() => Fs.rmSync(dir, { recursive: true, force: true }))
let n = 0
const peer = { module: "@effect-ipc/transport-nng", export: "descriptor" }
// nng frames and checks its own connections (the SP protocol): raw bytes never reach the transport
const notApplicable = { "raw-stream": "nng's SP protocol frames its connections; garbage floods are flood.test.ts's" }

const existing = (...paths: ReadonlyArray<string>) => paths.filter((path) => Fs.existsSync(path))

Conformance.suite({
  name: "nng+ipc://",
  descriptor: Nng.descriptor,
  peer,
  address: () => `nng+ipc://${dir}/s${n++}.ipc`,
  maxFrameSize: Framing.DEFAULT_MAX_FRAME_SIZE,
  notApplicable,
  residue: (address) => existing(address.slice("nng+ipc://".length))
})

Conformance.suite({
  name: "nng+tcp://",
  descriptor: Nng.descriptor,
  peer,
  address: () => `nng+tcp://127.0.0.1:${freePort()}`,
  maxFrameSize: Framing.DEFAULT_MAX_FRAME_SIZE,
  notApplicable
})

Conformance.suite({
  name: "nng+ws://",
  descriptor: Nng.descriptor,
  peer,
  address: () => `nng+ws://127.0.0.1:${freePort()}/conformance`,
  maxFrameSize: Framing.DEFAULT_MAX_FRAME_SIZE,
  notApplicable
})

Conformance.suite({
  name: "nng+inproc://",
  descriptor: Nng.descriptor,
  address: () => `nng+inproc://conformance-${n++}`,
  maxFrameSize: Framing.DEFAULT_MAX_FRAME_SIZE,
  notApplicable: { ...notApplicable, "peer-process": "nng+inproc:// lives inside one process" }
})
