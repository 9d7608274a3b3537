/**
 * The in-process transport, `memory://name`: channels between fibers of one
 * process, with the same semantics as the OS transports (whole messages, in
 * order, back-pressure, graceful close vs. lost peer). For tests, and for
 * plugins that run in-process today and out-of-process tomorrow.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Latch from "effect/Latch"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as Address from "./Address.ts"
import * as ChannelEngine from "./ChannelEngine.ts"
import { copyOf } from "./internal/bytes.ts"
import type * as IpcChannel from "./IpcChannel.ts"
import * as IpcError from "./IpcError.ts"
import * as Transport from "./Transport.ts"
import * as TransportOptions from "./TransportOptions.ts"

/** Options of the memory transport. */
export interface MemoryOptions {
  /** Largest message accepted by `send` (default 256 MiB). */
  readonly maxMessageSize?: number | undefined
  /** Messages buffered at the receiver before the sender waits (default 4096). */
  readonly maxBufferedMessages?: number | undefined
}

/**
 * A listener by name: `connect` makes the server's end of a connection (`undefined` while the listener holds
 * `Transport.MAX_UNACCEPTED` channels nobody accepted), and `room` opens as the program accepts one.
 */
interface MemoryListener {
  readonly connect: (client: MemoryEnd) => MemoryEnd | undefined
  readonly room: Latch.Latch
}

const listeners = new Map<string, MemoryListener>()

/**
 * One end of a memory channel: its sink, once its engine has started, whether its inbox is full, and
 * whether it wrote into the peer's inbox while that was full (and waits for room).
 */
interface MemoryEnd {
  sink: ChannelEngine.Sink | undefined
  full: boolean
  waiting: boolean
}

const newEnd = (): MemoryEnd => ({ sink: undefined, full: false, waiting: false })

// the link of one end: a send is a push into the peer's inbox (a copy: the caller may reuse its
// buffer). As over a socket, the message that fills the peer's inbox is taken (a message larger than
// the inbox's limit included, so one fiber can send it and then receive it); a send made while the
// inbox is full waits until the peer has read. The goodbye reaches the peer at once
const connectEnds = (
  address: string,
  self: MemoryEnd,
  peer: MemoryEnd,
  description: string,
  options: MemoryOptions,
  ended?: () => void
): IpcChannel.IpcChannel => {
  return ChannelEngine.make({
    address,
    peer: { pid: process.pid, description },
    maxMessageSize: options.maxMessageSize ?? 256 * 1024 * 1024,
    maxBufferedMessages: options.maxBufferedMessages ?? 4096,
    highWaterMark: 0
  }, (sink) => {
    self.sink = sink
    return {
      write: (message) => {
        if (peer.full) self.waiting = true
        if (!peer.sink!.message(copyOf(message))) peer.full = true
      },
      pending: () => self.waiting ? 1 : 0,
      // our inbox has room: the peer's waiting senders go on
      resume: () => {
        self.full = false
        peer.waiting = false
        peer.sink?.writable()
      },
      goodbye: (sent) => {
        peer.sink?.peerClosed()
        sent()
        sink.closed()
      },
      destroy: () => {
        self.full = false
        peer.waiting = false
        peer.sink?.writable()
        ended?.()
      }
    }
  }).channel
}

/** Makes the memory transport. */
export const make = (options: MemoryOptions = {}): Transport.TransportShape => {
  return {
    schemes: ["memory"],
    listen: (address) =>
      Effect.gen(function*() {
        yield* TransportOptions.optionsOk(options, address)
        const parsed = yield* Address.parseFor(address, ["memory"])
        if (listeners.has(parsed.rest)) {
          return yield* IpcError.make("AddressInUse", "a listener already serves this name", address)
        }
        const acceptor = yield* Transport.makeAcceptor(address)
        // the channels made and not yet ended (the listener's close closes them)
        const accepted = new Set<IpcChannel.IpcChannel>()
        const room = Latch.makeUnsafe(true)
        listeners.set(parsed.rest, {
          connect: (client) => {
            if (acceptor.full()) {
              Latch.closeUnsafe(room)
              return undefined
            }
            const server = newEnd()
            const channel: IpcChannel.IpcChannel = connectEnds(
              address,
              server,
              client,
              "memory client",
              options,
              () => accepted.delete(channel)
            )
            accepted.add(channel)
            acceptor.offer(channel)
            return server
          },
          room
        })
        yield* Effect.addFinalizer(() =>
          Effect.gen(function*() {
            listeners.delete(parsed.rest)
            // dials waiting for room find the listener gone
            Latch.openUnsafe(room)
            yield* acceptor.shutdown
            for (const channel of accepted) yield* channel.close
          })
        )
        // each accept makes room for a dial that waits
        const madeRoom = Effect.sync(() => void Latch.openUnsafe(room))
        return {
          ...acceptor.listener,
          accept: Effect.tap(acceptor.listener.accept, () => madeRoom),
          connections: Stream.tap(acceptor.listener.connections, () => madeRoom)
        }
      }),
    dial: (address) =>
      Effect.gen(function*() {
        yield* TransportOptions.optionsOk(options, address)
        const parsed = yield* Address.parseFor(address, ["memory"])
        const client = newEnd()
        let server: MemoryEnd | undefined
        while (server === undefined) {
          const listener = listeners.get(parsed.rest)
          if (listener === undefined) {
            return yield* IpcError.make(
              "NotFound",
              "no listener serves this name in this process (memory:// does not reach other processes)",
              address
            )
          }
          server = listener.connect(client)
          // the listener holds MAX_UNACCEPTED channels nobody accepted: wait until the program accepts one, as
          // a connect waits on a full backlog (a burst of dials in one turn comes before its accepts can run)
          if (server === undefined) yield* listener.room.await
        }
        const channel = connectEnds(address, client, server, "memory server", options)
        yield* Effect.addFinalizer(() => channel.close)
        return channel
      })
  }
}

/** The memory transport as the `Transport` service (instrumented), its options checked as it is built (`Transport.layerOf`). */
export const layer = (options?: MemoryOptions): Layer.Layer<Transport.Transport, IpcError.IpcError> =>
  Transport.layerOf(make, options)
