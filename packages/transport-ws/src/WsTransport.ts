/**
 * The `ws://` transport for Node: `listen` is `WsServer.listen`, `dial` is
 * `WsClient.dial`, which finds a local server's token in its token file
 * (`TokenFile`) when neither the options nor the address carry one. Before it
 * sends a token from the token file to a loopback port, it checks (Linux:
 * `/proc/net/tcp`, see `internal/owner.ts`) that the port's listener is this
 * user's, and fails with `PeerRejected` otherwise: a stale token file (its
 * server died) does not hand the token to another user now on that port.
 *
 * @since 0.1.0
 */
import type * as IpcError from "@effect-ipc/core/IpcError"
import * as Transport from "@effect-ipc/core/Transport"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Net from "node:net"
import { WebSocket as NodeWebSocket } from "ws"
import * as Link from "./internal/link.ts"
import * as ListenerOwner from "./internal/owner.ts"
import * as TokenFile from "./TokenFile.ts"
import * as WsAddress from "./WsAddress.ts"
import * as WsClient from "./WsClient.ts"
import * as WsServer from "./WsServer.ts"

/** Options of both sides: the listener's and the client's. */
export interface WsTransportOptions extends WsServerOptions, WsClient.WsClientOptions {}

/** Re-exported so that one import names every option. */
export type WsServerOptions = WsServer.WsServerOptions

/**
 * Node's client socket: the `ws` library's, which drops a connection at once
 * when `close` gives up on its peer (the global `WebSocket` would wait for a
 * close frame that a peer that does not read never sends, holding the
 * process) and pauses reading while the inbox is full. It refuses messages
 * over `maxMessageSize` itself (close 1009), and offers no compression.
 */
const connectNode = (maxMessageSize: number): WsClient.Connect => (url, protocols, headers) => {
  const ws = new NodeWebSocket(url, protocols, {
    headers: headers === undefined ? undefined : { ...headers },
    // `ws` takes 0 for no limit (see WsServer)
    maxPayload: Math.max(1, maxMessageSize),
    perMessageDeflate: false
  })
  // its TCP socket's write error, which a sender that never waits would otherwise not hear of (see the link)
  const writeError = (): Error | null | undefined => {
    const raw: unknown = Reflect.get(ws, "_socket")
    return raw instanceof Net.Socket ? raw.errored : undefined
  }
  return Object.assign(ws, { writeError })
}

/** Makes the `ws://` transport (listen and dial). */
export const make = (options: WsTransportOptions = {}): Transport.TransportShape => {
  // options that are not an object (a caller without types): every listen and dial fails with InvalidOption
  const refused = TransportOptions.refusedIfNotAnObject(WsAddress.schemes, options)
  if (refused !== undefined) return refused
  const clientOptions: WsClient.WsClientOptions = {
    ...options,
    // no lookup of the token file behind `dial`'s back: `dial` reads it itself, where it may (see there)
    tokenLookup: options.tokenLookup,
    connect: options.connect ?? connectNode(options.maxMessageSize ?? Link.DEFAULT_MAX_MESSAGE_SIZE)
  }
  const dial = (address: string) =>
    Effect.gen(function*() {
      yield* WsAddress.optionsOk(options, address)
      const parsed = yield* Effect.flatMap(WsAddress.parse(address), WsAddress.dialable)
      // a token given, or a lookup of the user's own: used as it is
      if (options.token !== undefined || parsed.token !== undefined || options.tokenLookup !== undefined) {
        return yield* WsClient.dial(address, clientOptions)
      }
      // where this transport's own listeners write it (a `tokenFile` of its own), else the address's default
      // file: only to a loopback port, whose listener is checked to be this user's below. Never to another host,
      // whose listener no one here can check (a token file left by a listener of ours that died at an address
      // that is now another machine's went there)
      // (a damaged file fails the dial with `Corrupt`, naming it)
      const token = !parsed.loopback
        ? undefined
        : typeof options.tokenFile === "string"
        ? yield* TokenFile.read(options.tokenFile)
        : yield* TokenFile.find(parsed)
      if (token !== undefined) yield* ListenerOwner.checkOwn(parsed.port, parsed.redacted)
      return yield* WsClient.dial(address, { ...clientOptions, token })
    })
  return {
    schemes: WsAddress.schemes,
    listen: (address) => WsServer.listen(address, options),
    dial
  }
}

/** The `ws://` transport as the `Transport` service (instrumented), its options checked as it is built (`WsAddress.layerOptionsOk`). */
export const layer = (options?: WsTransportOptions): Layer.Layer<Transport.Transport, IpcError.IpcError> =>
  Transport.layerOf(make, options, WsAddress.layerOptionsOk)
