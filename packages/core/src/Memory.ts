/**
 * The in-process transport, `memory://name`: channels between fibers of one
 * process, with the same semantics as the OS transports (whole messages, in
 * order, back-pressure, graceful close vs. lost peer). For tests, and for
 * plugins that run in-process today and out-of-process tomorrow.
 *
 * @since 0.1.0
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Latch from "effect/Latch"
import * as Layer from "effect/Layer"
import * as Address from "./Address.ts"
import * as Inbox from "./Inbox.ts"
import * as IpcChannel from "./IpcChannel.ts"
import * as IpcError from "./IpcError.ts"
import * as Transport from "./Transport.ts"

/** Options of the memory transport. */
export interface MemoryOptions {
  /** Largest message accepted by `send` (default 256 MiB). */
  readonly maxMessageSize?: number | undefined
  /** Messages buffered at the receiver before the sender waits (default 4096). */
  readonly maxBufferedMessages?: number | undefined
}

const listeners = new Map<string, (client: MemoryEnd) => MemoryEnd>()

interface MemoryEnd {
  readonly inbox: Inbox.Inbox
  readonly writable: Latch.Latch
  readonly closed: Deferred.Deferred<void>
}

const makeEnd = (maxBufferedMessages: number): MemoryEnd => {
  const writable = Latch.makeUnsafe(true)
  return {
    inbox: Inbox.make({ maxMessages: maxBufferedMessages, onResume: () => Latch.openUnsafe(writable) }),
    writable,
    closed: Deferred.makeUnsafe<void>()
  }
}

const connectEnds = (
  address: string,
  self: MemoryEnd,
  peer: MemoryEnd,
  description: string,
  maxMessageSize: number
): IpcChannel.IpcChannel => {
  const closedError = IpcError.make("Closed", "the channel is closed", address)
  const isClosed = () => Deferred.isDoneUnsafe(self.closed) || Deferred.isDoneUnsafe(peer.closed)
  const send = (message: Uint8Array): Effect.Effect<void, IpcError.IpcError> =>
    Effect.suspend(() => {
      if (isClosed()) return Effect.fail(closedError)
      if (message.byteLength > maxMessageSize) {
        return Effect.fail(IpcError.frameTooLarge(message.byteLength, maxMessageSize, address))
      }
      if (peer.inbox.push(message.slice())) return Effect.void
      Latch.closeUnsafe(peer.writable)
      return Effect.flatMap(peer.writable.await, () => (isClosed() ? Effect.fail(closedError) : Effect.void))
    })
  const close = Effect.sync(() => {
    if (Deferred.isDoneUnsafe(self.closed)) return
    Deferred.doneUnsafe(self.closed, Effect.void)
    self.inbox.shutdown(closedError)
    peer.inbox.end()
    Latch.openUnsafe(peer.writable)
    Latch.openUnsafe(self.writable)
  })
  return IpcChannel.make({
    address,
    peer: { pid: process.pid, description },
    inbox: self.inbox,
    send,
    close,
    closed: Effect.raceFirst(Deferred.await(self.closed), Deferred.await(peer.closed))
  })
}

/** Makes the memory transport. */
export const make = (options: MemoryOptions = {}): Transport.TransportShape => {
  const maxMessageSize = options.maxMessageSize ?? 256 * 1024 * 1024
  const maxBuffered = options.maxBufferedMessages ?? 4096
  return {
    schemes: ["memory"],
    listen: (address) =>
      Effect.gen(function*() {
        const parsed = yield* Address.parseFor(address, ["memory"])
        if (listeners.has(parsed.rest)) {
          return yield* IpcError.make("AddressInUse", "a listener already serves this name", address)
        }
        const acceptor = yield* Transport.makeAcceptor(address)
        const accepted = new Set<IpcChannel.IpcChannel>()
        listeners.set(parsed.rest, (client) => {
          const server = makeEnd(maxBuffered)
          const channel = connectEnds(address, server, client, "memory client", maxMessageSize)
          accepted.add(channel)
          acceptor.offer(channel)
          return server
        })
        yield* Effect.addFinalizer(() =>
          Effect.gen(function*() {
            listeners.delete(parsed.rest)
            acceptor.end()
            for (const channel of accepted) yield* channel.close
          })
        )
        return acceptor.listener
      }),
    dial: (address) =>
      Effect.gen(function*() {
        const parsed = yield* Address.parseFor(address, ["memory"])
        const accept = listeners.get(parsed.rest)
        if (accept === undefined) {
          return yield* IpcError.make(
            "NotFound",
            "no listener serves this name in this process (memory:// does not reach other processes)",
            address
          )
        }
        const client = makeEnd(maxBuffered)
        const channel = connectEnds(address, client, accept(client), "memory server", maxMessageSize)
        yield* Effect.addFinalizer(() => channel.close)
        return channel
      })
  }
}

/** The memory transport as the `Transport` service (instrumented: see `Transport.instrument`). */
export const layer = (options?: MemoryOptions): Layer.Layer<Transport.Transport> =>
  Layer.succeed(Transport.Transport, Transport.instrument(make(options)))
