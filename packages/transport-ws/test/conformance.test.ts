import * as Conformance from "@effect-ipc/testing/Conformance"
import * as Ws from "@effect-ipc/transport-ws"
import { afterAll } from "@effect/vitest"
import * as Fs from "node:fs"
import { freshAddress, sweepTokenFiles, tokenFileOf } from "./helpers.ts"

afterAll(sweepTokenFiles)

Conformance.suite({
  name: "ws://",
  descriptor: Ws.descriptor,
  scheme: "ws",
  peer: { module: "@effect-ipc/transport-ws", export: "descriptor" },
  address: () => freshAddress("conformance"),
  maxFrameSize: 64 * 1024 * 1024,
  sendsBatches: true,
  // the listener's token file, while it listens
  residue: (address) => [tokenFileOf(address)].filter((file) => Fs.existsSync(file))
})
