import * as Registry from "@effect-ipc/core/Registry"
import * as Conformance from "@effect-ipc/testing/Conformance"
import { assert, describe, it } from "@effect/vitest"

const subject = (descriptor: Registry.TransportDescriptor, scheme?: string): Conformance.Subject => ({
  name: "probe",
  descriptor,
  scheme,
  address: () => "memory://probe",
  maxFrameSize: 1024
})

describe("Conformance.suite reads what a scheme lacks from its descriptor", () => {
  // each throws at registration, before it registers a case
  it("refuses a subject without a peer when the descriptor claims peer processes", () => {
    const { lacks: _, ...noLacks } = Registry.memory
    assert.throws(() => Conformance.suite(subject(noLacks)), /give the subject a peer .* or list "peer-process"/)
  })

  it("refuses a subject without raw when the descriptor claims a byte stream", () => {
    const descriptor = { ...Registry.memory, lacks: { memory: { "peer-process": "in-process" } } }
    assert.throws(() => Conformance.suite(subject(descriptor)), /give the subject raw .* or list "raw-stream"/)
  })

  it("refuses a scheme the descriptor does not serve", () => {
    assert.throws(() => Conformance.suite(subject(Registry.memory, "unix")), /does not serve unix:\/\//)
  })
})
