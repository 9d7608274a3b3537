/**
 * Typed RPC over any effect-ipc transport, built on `effect/rpc`. Define an
 * `RpcGroup` once; serve it with `layerServer(address)` and call it with
 * `layerClient(address)`, over whichever `Transport` is provided. Requests,
 * typed errors, streamed responses, fire-and-forget calls, interruption and
 * pings are effect's own; this module only carries its frames.
 *
 * The client reconnects with `Policy.reconnect`. A request in flight when the
 * link drops fails with an `RpcClientError`: it is never replayed silently.
 * Mark an operation safe to repeat by wrapping the call in `retryIdempotent`.
 *
 * @since 0.1.0
 */
import type { NonEmptyReadonlyArray } from "effect/Array"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Latch from "effect/Latch"
import * as Layer from "effect/Layer"
import * as NetAddress from "effect/net/NetAddress"
import * as RpcClient from "effect/rpc/RpcClient"
import type { RpcClientError } from "effect/rpc/RpcClientError"
import * as RpcSerialization from "effect/rpc/RpcSerialization"
import * as RpcServer from "effect/rpc/RpcServer"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Socket from "effect/socket/Socket"
import * as SocketServer from "effect/socket/SocketServer"
import type * as IpcChannel from "./IpcChannel.ts"
import type * as IpcError from "./IpcError.ts"
import * as Policy from "./Policy.ts"
import * as Transport from "./Transport.ts"

const textEncoder = new TextEncoder()

const readError = (error: IpcError.IpcError): Socket.SocketError =>
  error.reason === "Closed"
    ? new Socket.SocketError({ reason: new Socket.SocketCloseError({ code: 1000, closeReason: error.detail }) })
    : new Socket.SocketError({ reason: new Socket.SocketReadError({ cause: error }) })

/**
 * An effect `Socket` over effect-ipc channels. Each time the socket is read
 * (on the first connect and on every reconnect), `open` opens a fresh channel
 * in the reader's scope; writes go to the channel of the current connection
 * and wait while there is none.
 */
export const toSocket = (open: Effect.Effect<IpcChannel.IpcChannel, IpcError.IpcError, Scope.Scope>): Socket.Socket => {
  let current: IpcChannel.IpcChannel | undefined
  const connected = Latch.makeUnsafe(false)

  const reader: Socket.Socket["reader"] = Effect.gen(function*() {
    const channel = yield* open.pipe(
      Effect.mapError((cause) =>
        new Socket.SocketError({ reason: new Socket.SocketOpenError({ kind: "Unknown", cause }) })
      )
    )
    current = channel
    Latch.openUnsafe(connected)
    yield* Effect.addFinalizer(() =>
      Effect.andThen(
        Effect.sync(() => {
          if (current === channel) {
            current = undefined
            Latch.closeUnsafe(connected)
          }
        }),
        channel.close
      )
    )
    const pull: Effect.Effect<NonEmptyReadonlyArray<Uint8Array>, Socket.SocketError> = Effect.mapError(
      channel.receiveAll,
      readError
    )
    return { pull, upgrade: Socket.SocketUpgradeError.unsupported }
  })

  const write = (chunk: Uint8Array | string | Socket.CloseEvent): Effect.Effect<void, Socket.SocketError> =>
    Effect.suspend(() => {
      const channel = current
      if (channel === undefined) return Effect.andThen(connected.await, write(chunk))
      if (Socket.isCloseEvent(chunk)) return channel.close
      return Effect.mapError(
        channel.send(typeof chunk === "string" ? textEncoder.encode(chunk) : chunk),
        (cause) => new Socket.SocketError({ reason: new Socket.SocketWriteError({ cause }) })
      )
    })

  return Socket.make({
    reader,
    writer: Effect.succeed({
      write,
      writeAll: (chunks) => Effect.forEach(chunks, write, { discard: true })
    })
  })
}

/** An effect `SocketServer` over a listener: each accepted channel is one socket. */
export const toSocketServer = (listener: Transport.Listener): SocketServer.SocketServer["Service"] => ({
  address: NetAddress.unixPathAddress(listener.address),
  run: (handler) =>
    Transport.serve(listener, (channel) => handler(toSocket(Effect.succeed(channel)))).pipe(
      Effect.scoped,
      Effect.mapError((cause) =>
        new SocketServer.SocketServerError({ reason: new SocketServer.SocketServerUnknownError({ cause }) })
      )
    )
})

/** Client options: ping cadence and reconnect schedule. */
export interface ClientOptions {
  /** How often the client pings the server (default 5 s). */
  readonly pingInterval?: Duration.Input | undefined
  /** Silence after which the connection is dropped (default: the ping interval). */
  readonly pingTimeout?: Duration.Input | undefined
  /** The reconnect schedule (default `Policy.reconnect`). */
  readonly reconnect?: Schedule.Schedule<unknown, Socket.SocketError> | undefined
}

/** The RPC client protocol over the current `Transport`, dialling `address` (and redialling after a loss). */
export const layerClientProtocol = (
  address: string,
  options: ClientOptions = {}
): Layer.Layer<RpcClient.Protocol, never, Transport.Transport | RpcSerialization.RpcSerialization> =>
  Layer.effect(RpcClient.Protocol)(
    Effect.gen(function*() {
      const transport = yield* Transport.Transport
      const socket = toSocket(transport.dial(address))
      return yield* RpcClient.makeProtocolSocket({
        retryTransientErrors: true,
        retryPolicy: options.reconnect ?? Policy.reconnect,
        ...(options.pingInterval === undefined ? {} : { pingInterval: options.pingInterval }),
        ...(options.pingTimeout === undefined ? {} : { pingTimeout: options.pingTimeout })
      }).pipe(Effect.provideService(Socket.Socket, socket))
    })
  )

/** The RPC server protocol over the current `Transport`, listening at `address`; fails if it cannot listen. */
export const layerServerProtocol = (
  address: string
): Layer.Layer<RpcServer.Protocol, IpcError.IpcError, Transport.Transport | RpcSerialization.RpcSerialization> =>
  Layer.effect(RpcServer.Protocol)(
    Effect.gen(function*() {
      const listener = yield* Transport.listen(address)
      return yield* RpcServer.makeProtocolSocketServer.pipe(
        Effect.provideService(SocketServer.SocketServer, toSocketServer(listener))
      )
    })
  )

/**
 * The default serialization: effect's schema-driven binary format, one RPC
 * message per channel message. Binary fields travel as bytes (no base64), and
 * the size limit is the transport's own frame limit.
 */
export const layerSerialization: Layer.Layer<RpcSerialization.RpcSerialization> = RpcSerialization.layerSchemaBinary({
  maxFrameSize: "unbounded"
})

/** JSON serialization, one RPC message per channel message: slower, but readable by any peer. */
export const layerSerializationJson: Layer.Layer<RpcSerialization.RpcSerialization> = RpcSerialization.layerJson

/**
 * Retries a call that is safe to repeat when the link dropped under it
 * (`RpcClientError`), with `Policy.retry`. Typed errors of the procedure itself
 * are not retried. Use only for idempotent operations.
 */
export const retryIdempotent = <A, E, R>(
  call: Effect.Effect<A, E | RpcClientError, R>,
  schedule: Schedule.Schedule<unknown> = Policy.retry(5)
): Effect.Effect<A, E | RpcClientError, R> =>
  Effect.retry(call, {
    schedule,
    while: (error) => typeof error === "object" && error !== null && "_tag" in error && error._tag === "RpcClientError"
  })
