/**
 * The `ws://` transport for Node: `listen` is `WsServer.listen`, `dial` is
 * `WsClient.dial`, which finds a local server's token in its token file
 * (`TokenFile`) when neither the options nor the address carry one.
 *
 * @since 0.1.0
 */
import * as Transport from "@effect-ipc/core/Transport"
import * as Layer from "effect/Layer"
import * as TokenFile from "./TokenFile.ts"
import * as WsAddress from "./WsAddress.ts"
import * as WsClient from "./WsClient.ts"
import * as WsServer from "./WsServer.ts"

/** Options of both sides: the listener's and the client's. */
export interface WsTransportOptions extends WsServerOptions, WsClient.WsClientOptions {}

/** Re-exported so that one import names every option. */
export type WsServerOptions = WsServer.WsServerOptions

/** Makes the `ws://` transport (listen and dial). */
export const make = (options: WsTransportOptions = {}): Transport.TransportShape => {
  const clientOptions: WsClient.WsClientOptions = { ...options, tokenLookup: options.tokenLookup ?? TokenFile.lookup }
  return {
    schemes: WsAddress.schemes,
    listen: (address) => WsServer.listen(address, options),
    dial: (address) => WsClient.dial(address, clientOptions)
  }
}

/** The `ws://` transport as the `Transport` service (instrumented: see `Transport.instrument`). */
export const layer = (options?: WsTransportOptions): Layer.Layer<Transport.Transport> =>
  Layer.succeed(Transport.Transport, Transport.instrument(make(options)))
