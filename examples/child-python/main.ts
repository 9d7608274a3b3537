/**
 * A Python child over a pipe: `ChildPipe.spawn` starts `child.py` with a
 * channel on its fd 3, this program sends it a few messages and prints the
 * replies, then closes the channel and waits for the child to exit. The child
 * needs nothing but Python's standard library (see `child.py`).
 *
 *   node main.ts
 */
import { ChildPipe } from "@effect-ipc/transport-pipe"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect } from "effect"
import { fileURLToPath } from "node:url"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

const program = Effect.gen(function*() {
  const child = yield* ChildPipe.spawn("python3", { args: [fileURLToPath(new URL("child.py", import.meta.url))] })
  for (const message of ["hello from node", "effect-ipc speaks python", "bye"]) {
    yield* child.channel.send(encoder.encode(message))
    console.log(`${message} -> ${decoder.decode(yield* child.channel.receive)}`)
  }
  // a graceful end: the child sees the close frame and exits by itself
  yield* child.channel.close
  const status = yield* child.exit
  console.log(`child exited with code ${status.code}`)
})

// Ctrl-C or an error closes the scope: the child is ended (SIGTERM, then SIGKILL) if it still runs
Effect.scoped(program).pipe(NodeRuntime.runMain)
