/**
 * Typed RPC (`effect/rpc`) over nng's request/reply pattern: the server is a
 * `Rep` socket, the client a `Req` pool, and each call is one nng request
 * whose reply carries every response to it (the exit, and for a streamed
 * procedure its chunks, delivered when the stream ends). Any serialization
 * works; `IpcRpc.layerSerialization` (packed, the default) is the usual one, and
 * `RpcSerialization.layerJson` gives a body any JSON-speaking nng peer can read.
 *
 * Reconnects are nng's, and a call is never replayed behind the caller's back:
 * a call in flight when its connection drops fails with an `RpcClientError`
 * (reason `SocketReadError`, its cause the `IpcError` `ConnectionLost`),
 * except the procedures listed as `idempotent`, which are retried with the
 * requester's schedule.
 *
 * Compared with `IpcRpc` over the channel transport (`NngTransport`), this
 * protocol keeps no connection state (any req peer can call, replies may come
 * from any server behind a load balancer of nng sockets), but a stream is not
 * delivered until it has ended, and interrupting a call does not stop its
 * handler.
 *
 * @since 0.1.0
 */
import * as Framing from "@effect-ipc/core/Framing"
import type * as IpcError from "@effect-ipc/core/IpcError"
import * as IpcRpc from "@effect-ipc/core/IpcRpc"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as RpcClient from "effect/rpc/RpcClient"
import { RpcClientDefect, RpcClientError } from "effect/rpc/RpcClientError"
import * as RpcMessage from "effect/rpc/RpcMessage"
import * as RpcSerialization from "effect/rpc/RpcSerialization"
import * as RpcServer from "effect/rpc/RpcServer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Socket from "effect/socket/Socket"
import * as ReadAhead from "./internal/readAhead.ts"
import * as Rep from "./Rep.ts"
import * as Req from "./Req.ts"

const toBytes = (encoded: Uint8Array | string | undefined): Uint8Array =>
  encoded === undefined ? new Uint8Array(0) : IpcRpc.encodedBytes(encoded)

/** Options of the client protocol. */
export interface ClientOptions extends Req.RequesterOptions {
  /** Procedures safe to repeat: retried after a lost connection or a timeout. */
  readonly idempotent?: ReadonlyArray<string> | undefined
}

const transportError = (cause: IpcError.IpcError) =>
  new RpcClientError({ reason: new Socket.SocketReadError({ cause }) })

const defect = (message: string, cause: unknown) =>
  new RpcClientError({ reason: new RpcClientDefect({ message, cause }) })

/** The RPC client protocol over a `Req` pool; its sockets close with the scope. */
export const makeClientProtocol = (
  options: ClientOptions
): Effect.Effect<RpcClient.Protocol["Service"], IpcError.IpcError, Scope.Scope | RpcSerialization.RpcSerialization> =>
  Effect.gen(function*() {
    const serialization = yield* RpcSerialization.RpcSerialization
    const requester = yield* Req.make(options)
    const idempotent = new Set(options.idempotent ?? [])
    return yield* RpcClient.Protocol.make((writeResponse) =>
      Effect.succeed({
        send: (clientId, request) => {
          if (request._tag !== "Request") return Effect.void
          const parser = serialization.makeUnsafe()
          return requester.request(toBytes(parser.encode([request])), { idempotent: idempotent.has(request.tag) }).pipe(
            Effect.mapError(transportError),
            Effect.flatMap((reply) =>
              Effect.try({
                try: () => parser.decode(reply) as ReadonlyArray<RpcMessage.FromServerEncoded>,
                catch: (cause) => defect("cannot decode the reply", cause)
              })
            ),
            Effect.flatMap((responses) => {
              let answered = request.discard === true
              for (const response of responses) {
                if (response._tag === "Exit" && String(response.requestId) === String(request.id)) answered = true
                if (RpcMessage.isTerminalResponse(response)) answered = true
              }
              return Effect.andThen(
                Effect.forEach(responses, (response) => writeResponse(clientId, response), { discard: true }),
                answered ? Effect.void : Effect.fail(defect("the reply ended before the call completed", request))
              )
            })
          )
        },
        supportsAck: false,
        supportsTransferables: false,
        codecFor: serialization.codecFor
      })
    )
  })

/** The RPC client protocol over a `Req` pool, as a layer. */
export const layerClientProtocol = (
  options: ClientOptions
): Layer.Layer<RpcClient.Protocol, IpcError.IpcError, RpcSerialization.RpcSerialization> =>
  Layer.effect(RpcClient.Protocol, makeClientProtocol(options))

/** The RPC server protocol over a `Rep` socket; it closes with the scope. */
export const makeServerProtocol = (
  options: Rep.ServeOptions
): Effect.Effect<RpcServer.Protocol["Service"], IpcError.IpcError, Scope.Scope | RpcSerialization.RpcSerialization> =>
  Effect.gen(function*() {
    const serialization = yield* RpcSerialization.RpcSerialization
    const encodeDefect = Schema.encodeSync(serialization.codecFor(Schema.Defect()))
    const bounds = yield* ReadAhead.boundsOf(options)
    const replier = yield* Rep.make(options)
    const disconnects = yield* Queue.make<number>()
    // a reply is one nng message: the responses collected for it stop at the socket's message limit
    const limit = options.maxMessageSize ?? Framing.DEFAULT_MAX_FRAME_SIZE
    // measures a chunk as its reply will carry it (one parser for every exchange: made once, not per chunk)
    const sizer = serialization.makeUnsafe()
    const exchanges = new Map<
      number,
      { responses: Array<unknown>; bytes: number; readonly ended: Deferred.Deferred<void> }
    >()
    let nextId = 0

    return yield* RpcServer.Protocol.make((writeRequest) =>
      Effect.gen(function*() {
        /** One request: hand its messages to the server, collect the responses, reply with all of them. */
        const exchange = (request: Rep.Request) => {
          const id = nextId++
          const state = { responses: [] as Array<unknown>, bytes: 0, ended: Deferred.makeUnsafe<void>() }
          exchanges.set(id, state)
          return Effect.gen(function*() {
            const parser = serialization.makeUnsafe()
            const decoded = yield* Effect.try({
              try: () => parser.decode(request.body) as ReadonlyArray<RpcMessage.FromClientEncoded>,
              catch: (cause) => cause
            }).pipe(Effect.catch((cause) =>
              Effect.as(
                Effect.sync(() => state.responses.push(RpcMessage.ResponseDefectEncoded(encodeDefect(cause)))),
                []
              )
            ))
            for (const message of decoded) yield* writeRequest(id, message)
            yield* writeRequest(id, RpcMessage.constEof)
            if (decoded.length > 0) yield* Deferred.await(state.ended)
            yield* request.reply(toBytes(parser.encode(state.responses)))
          }).pipe(
            Effect.catch((error) => Effect.logDebug("an RPC reply was not sent", error)),
            // an exchange the server did not finish (we are closing): its requests are interrupted
            Effect.ensuring(Effect.sync(() => {
              if (exchanges.delete(id)) Queue.offerUnsafe(disconnects, id)
            }))
          )
        }
        // as `Rep.run` takes them: `concurrency` exchanges at once, as many read ahead, `maxHeldBytes` held
        yield* Effect.forkScoped(
          ReadAhead.answer(replier.receive, ReadAhead.hasLeft, exchange, bounds, true).pipe(
            Effect.catch((error) =>
              error.reason._tag === "Closed" ? Effect.void : Effect.logWarning("RPC server", error)
            )
          )
        )
        return {
          disconnects,
          send: (clientId, response) =>
            Effect.sync(() => {
              // notifications cannot ride on a reply
              if (response._tag === "Request") return
              const state = exchanges.get(clientId)
              if (state === undefined) return
              if (response._tag === "Chunk") {
                // a stream is collected until it ends: one that never does (or outgrows the reply) is cut, its
                // handler interrupted, and the caller gets a defect saying so
                state.bytes += toBytes(sizer.encode([response])).byteLength
                if (state.bytes > limit) {
                  state.responses = [RpcMessage.ResponseDefectEncoded(encodeDefect(
                    `the streamed reply passed ${limit} bytes (maxMessageSize): over nng a stream is sent as one ` +
                      "reply once it has ended, so a longer or endless one is cut"
                  ))]
                  exchanges.delete(clientId)
                  Queue.offerUnsafe(disconnects, clientId)
                  Deferred.doneUnsafe(state.ended, Exit.void)
                  return
                }
              }
              state.responses.push(response)
            }),
          end: (clientId) =>
            Effect.sync(() => {
              const state = exchanges.get(clientId)
              if (state === undefined) return
              exchanges.delete(clientId)
              Queue.offerUnsafe(disconnects, clientId)
              Deferred.doneUnsafe(state.ended, Exit.void)
            }),
          clientIds: Effect.sync(() => new Set(exchanges.keys())),
          initialMessage: Effect.succeed(Option.none()),
          supportsAck: false,
          supportsTransferables: false,
          supportsSpanPropagation: false,
          supportsNotifications: false,
          codecFor: serialization.codecFor
        }
      })
    )
  })

/** The RPC server protocol over a `Rep` socket, as a layer; fails if it cannot listen. */
export const layerServerProtocol = (
  options: Rep.ServeOptions
): Layer.Layer<RpcServer.Protocol, IpcError.IpcError, RpcSerialization.RpcSerialization> =>
  Layer.effect(RpcServer.Protocol, makeServerProtocol(options))
