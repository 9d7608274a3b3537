/**
 * The effect-ipc modes of the benchmark's peer process (loaded by `peer.ts`
 * only for them, so that the raw peer runs without effect): `ipc-*` and
 * `fifo-*` serve channels at their `unix://` or `fifo://` address through the
 * package's router `Pipe.make()`; `child-*` serve the parent that spawned
 * them with `ChildPipe.spawn` (`ChildPipe.fromParent`); the RPC peers are
 * in `rpc.ts`.
 */
import { Transport } from "@effect-ipc/core"
import * as Pipe from "@effect-ipc/transport-pipe"
import * as Effect from "effect/Effect"
import { echo, sink } from "./handlers.ts"
import type { ChildPeerMode } from "./shared.ts"

/** The peer modes that listen at an address and serve channels. */
export type ChannelPeerMode = "ipc-echo" | "ipc-sink" | "fifo-echo" | "fifo-sink"

const serveChannels = (mode: ChannelPeerMode, address: string, ready: () => void) =>
  Effect.gen(function*() {
    const listener = yield* Pipe.make().listen(address)
    ready()
    yield* Transport.serve(listener, mode === "ipc-echo" || mode === "fifo-echo" ? echo : sink)
  }).pipe(Effect.scoped)

/** Serves `mode` at `address`, calling `ready` once listening; settles only if serving fails. */
export const serve = (mode: ChannelPeerMode, address: string, ready: () => void): Promise<void> =>
  Effect.runPromise(serveChannels(mode, address, ready))

/**
 * Serves the parent process over the channel `ChildPipe.spawn` gave us, until
 * the parent closes it (or goes away: a lost parent is a normal end here too).
 */
export const serveParent = (mode: ChildPeerMode): Promise<void> =>
  Effect.runPromise(
    Effect.flatMap(Pipe.ChildPipe.fromParent(), mode === "child-echo" ? echo : sink).pipe(
      Effect.catchIf((error) => error.reason._tag === "ConnectionLost", () => Effect.void),
      Effect.scoped
    )
  )
