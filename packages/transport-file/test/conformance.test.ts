import * as Conformance from "@effect-ipc/testing/Conformance"
import * as File from "@effect-ipc/transport-file"
import { afterAll } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const root = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-file-conf-"))
afterAll(() => Fs.rmSync(root, { recursive: true, force: true }))
let n = 0

Conformance.suite({
  name: "file://",
  descriptor: File.descriptor,
  peer: { module: "@effect-ipc/transport-file", export: "descriptor" },
  address: () => `file://${root}/d${n++}`,
  maxFrameSize: 32 * 1024 * 1024,
  sendsBatches: true,
  residue: (address) => [new URL(address).pathname].filter((path) => Fs.existsSync(path))
})
