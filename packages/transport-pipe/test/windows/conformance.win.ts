// The conformance suite for `pipe://` on Windows (named pipes), run by ./run.mjs under Node for
// Windows (Wine); ../Windows.test.ts reports each case in the main test run. The child-process
// cases of Windows are in ./ChildPipe.win.ts.
import * as Framing from "@effect-ipc/core/Framing"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Conformance from "@effect-ipc/testing/Conformance"
import * as Pipe from "@effect-ipc/transport-pipe"
import * as Effect from "effect/Effect"
import * as Net from "node:net"

let n = 0
const peer = { module: "@effect-ipc/transport-pipe", export: "descriptor" }

/** A raw connection to a `pipe://` listener with Node's own named-pipe client. */
const rawConnect = (address: string) =>
  Effect.acquireRelease(
    Effect.flatMap(Pipe.SocketPath.resolve(address), ({ path }) =>
      Effect.callback<Net.Socket, IpcError.IpcError>((resume) => {
        const socket = Net.createConnection({ path })
        socket.once("connect", () =>
          resume(Effect.succeed(socket)))
        socket.once("error", (cause) => resume(Effect.fail(IpcError.fromSystemError(cause, "Open", "raw connect"))))
      })),
    (socket) =>
      Effect.sync(() => socket.destroy())
  ).pipe(
    Effect.map((socket): Conformance.RawConnection => {
      socket.on("error", () => {})
      socket.resume()
      return {
        write: (bytes) => Effect.sync(() => void socket.write(bytes)),
        dropped: Effect.callback<void>((resume) => {
          if (socket.closed) return resume(Effect.void)
          socket.once("close", () => resume(Effect.void))
        })
      }
    })
  )

Conformance.suite({
  name: "pipe:// (win32)",
  descriptor: Pipe.descriptor,
  scheme: "pipe",
  peer,
  address: () => `pipe://conformance-${process.pid}-${n++}`,
  raw: rawConnect,
  maxFrameSize: Framing.DEFAULT_MAX_FRAME_SIZE,
  // Node for Windows under Wine takes 10 to 30 s to load the sources on a loaded 2-core machine
  peerStartTimeout: "90 seconds"
})
