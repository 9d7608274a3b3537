/**
 * A large payload over shared memory, read in place: this program listens at
 * `shm://`, starts a sender process (this file with `send`) that sends one
 * 64 MiB message, and reads it with `ShmChannel.receiveView`: the bytes are a
 * view of the shared memory, not a copy, valid until the view's scope closes
 * (then it reads as empty). Both sides print the payload's CRC-32; the
 * receiver sends its checksum back for the sender to confirm.
 *
 *   node main.ts
 */
import { ShmChannel, ShmTransport } from "@effect-ipc/transport-shm"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Effect } from "effect"
import { ChildProcess } from "effect/process"
import * as Zlib from "node:zlib"

const SIZE = 64 * 1024 * 1024
const encoder = new TextEncoder()
const decoder = new TextDecoder()
const crc32 = (bytes: Uint8Array) => Zlib.crc32(bytes).toString(16).padStart(8, "0")
const thisProgram = [...process.execArgv, import.meta.filename]

const receive = Effect.gen(function*() {
  const address = `shm://shm-large-example-${process.pid}`
  const listener = yield* ShmTransport.make().listen(address)
  const sender = yield* ChildProcess.make(process.execPath, [...thisProgram, "send", address], {
    stdout: "inherit",
    stderr: "inherit"
  })
  const channel = yield* listener.accept

  const received = yield* Effect.scoped(Effect.gen(function*() {
    const view = yield* ShmChannel.receiveView(channel) // no copy: valid until this scope closes
    const checksum = crc32(view)
    console.log(`receiver: ${view.byteLength} bytes read in place, crc32 ${checksum}`)
    return { checksum, view }
  }))
  console.log(`receiver: its scope closed, the view now has ${received.view.byteLength} bytes`)
  yield* channel.send(encoder.encode(received.checksum))
  console.log(`receiver: the sender exited with code ${yield* sender.exitCode}`)
})

const send = (address: string) =>
  Effect.gen(function*() {
    const channel = yield* ShmTransport.make().dial(address)
    const payload = new Uint8Array(SIZE)
    for (let i = 0; i < SIZE; i++) payload[i] = (i * 7 + (i >>> 16)) & 0xff
    console.log(`sender: ${payload.byteLength} bytes, crc32 ${crc32(payload)}`)
    yield* channel.send(payload) // over half the ring: it travels in a sealed segment of its own
    console.log(`sender: the receiver confirmed crc32 ${decoder.decode(yield* channel.receive)}`)
  })

const [role, address] = process.argv.slice(2)
const program = role === "send" ? send(address!) : receive

// the channels, the listener's socket file and the shared memory are released with the scope (Ctrl-C too)
program.pipe(Effect.scoped, Effect.provide(NodeServices.layer), NodeRuntime.runMain)
