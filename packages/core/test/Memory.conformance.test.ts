import * as Registry from "@effect-ipc/core/Registry"
import * as Conformance from "@effect-ipc/testing/Conformance"

let n = 0

Conformance.suite({
  name: "memory://",
  descriptor: Registry.memory,
  address: () => `memory://conformance-${process.pid}-${n++}`,
  maxFrameSize: 256 * 1024 * 1024,
  sendsBatches: true
})
