/**
 * @effect-ipc/transport-ws: `ws://` WebSocket channels between a Node server
 * and clients in Node or in a browser page. In a page, import
 * `@effect-ipc/transport-ws/WsClient` (it has no `node:` imports).
 *
 * @since 0.1.0
 */
import type * as Registry from "@effect-ipc/core/Registry"
import * as Effect from "effect/Effect"
import * as WsTransport from "./WsTransport.ts"

/** Where a server keeps its token for local clients (Node). */
export * as TokenFile from "./TokenFile.ts"
/** `ws://host:port/path` addresses (browser-safe). */
export * as WsAddress from "./WsAddress.ts"
/** The client, on the global `WebSocket` (browser-safe). */
export * as WsClient from "./WsClient.ts"
/** Subprotocols and close codes (browser-safe). */
export * as WsProtocol from "./WsProtocol.ts"
/** The listener, safe by default for a local daemon (Node). */
export * as WsServer from "./WsServer.ts"
/** Listener and client as one transport (Node). */
export * as WsTransport from "./WsTransport.ts"

/** A port for `service` in 17000-17999, from its name (FNV-1a), so that both sides agree on it. */
export const defaultPort = (service: string): number => {
  let hash = 0x811c9dc5
  for (let i = 0; i < service.length; i++) hash = Math.imul(hash ^ service.charCodeAt(i), 0x01000193) >>> 0
  return 17000 + (hash % 1000)
}

/** Makes a descriptor for `IPC_TRANSPORT=ws` with these options (see `descriptor`). */
export const makeDescriptor = (options: WsTransport.WsTransportOptions = {}): Registry.TransportDescriptor => ({
  name: "ws",
  schemes: ["ws"],
  make: Effect.sync(() => WsTransport.make(options)),
  defaultAddress: (service) => `ws://127.0.0.1:${defaultPort(service)}/${encodeURIComponent(service)}`,
  lacks: {
    ws: {
      "raw-stream":
        "ws:// carries WebSocket frames (RFC 6455), not effect-ipc frames: its own tests feed it bad WebSocket frames"
    }
  }
})

/**
 * The `ws` transport for `IPC_TRANSPORT=ws` with the safe defaults (loopback
 * only, no page origins, a token in a 0600 file); a service's default address
 * is `ws://127.0.0.1:<defaultPort(service)>/<service>`.
 */
export const descriptor: Registry.TransportDescriptor = makeDescriptor()
