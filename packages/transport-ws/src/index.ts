/**
 * @effect-ipc/transport-ws: `ws://` WebSocket channels between a Node server
 * and clients in Node or in a browser page. In a page, import
 * `@effect-ipc/transport-ws/WsClient` (it has no `node:` imports).
 *
 * @since 0.1.0
 */
import type * as Registry from "@effect-ipc/core/Registry"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as SchemaGetter from "effect/SchemaGetter"
import * as SchemaIssue from "effect/SchemaIssue"
import * as WsAddressModule from "./WsAddress.ts"
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

/**
 * The options configuration may set (`IPC_OPTIONS`, `IPC_OPTIONS_<NAME>`):
 * those of `WsTransport.WsTransportOptions` that are data (origins and hosts
 * as lists; no predicates, lookups or headers).
 */
export interface WsConfigOptions
  extends
    Omit<WsTransport.WsTransportOptions, "allowedOrigins" | "allowedHosts" | "tokenFile" | "tokenLookup" | "headers">
{
  /** Page origins allowed to connect. */
  readonly allowedOrigins?: ReadonlyArray<string> | undefined
  /** Host names a request's `Host` may name besides the loopback ones. */
  readonly allowedHosts?: ReadonlyArray<string> | undefined
  /** Where the listener writes its token. */
  readonly tokenFile?: string | undefined
}

/** A list of strings: a JSON array, or one string of comma-separated items (`"http://a:1,http://b:2"`). */
const List: Schema.Codec<ReadonlyArray<string>, unknown> = Schema.Unknown.pipe(
  Schema.decodeTo(Schema.Any as Schema.Codec<ReadonlyArray<string>>, {
    decode: SchemaGetter.transformEffect((input: unknown) => {
      const items = typeof input === "string"
        ? input.split(",").map((item) => item.trim()).filter((item) => item.length > 0)
        : Array.isArray(input) && input.every((item) => typeof item === "string")
        ? input
        : undefined
      return items === undefined
        ? Effect.fail(
          new SchemaIssue.InvalidValue({
            message: `expected a list of strings (a JSON array, or comma-separated), got ${JSON.stringify(input)}`
          }, input)
        )
        : Effect.succeed(items)
    }),
    encode: SchemaGetter.transform((value: ReadonlyArray<string>): unknown => value)
  })
)

const fields: TransportOptions.Fields<WsConfigOptions> = {
  maxMessageSize: TransportOptions.Bytes,
  highWaterMark: TransportOptions.Bytes,
  maxBufferedMessages: TransportOptions.Count,
  maxBufferedBytes: TransportOptions.Bytes,
  lingerTimeout: TransportOptions.Duration,
  writeTimeout: TransportOptions.Duration,
  handshakeTimeout: TransportOptions.Duration,
  maxPendingHandshakes: TransportOptions.Count,
  allowRemote: TransportOptions.Flag,
  allowedOrigins: List,
  allowedHosts: List,
  token: TransportOptions.Secret,
  allowWeakToken: TransportOptions.Flag,
  tokenFile: TransportOptions.Text
}

/** The options configuration may set, over `given` (what the program set in code). */
const declaration = (given: WsTransport.WsTransportOptions): TransportOptions.Declaration =>
  TransportOptions.declare<WsConfigOptions>()(
    fields,
    (chosen) =>
      Effect.map(
        WsAddressModule.layerOptionsOk({ ...given, ...chosen }),
        () => WsTransport.make({ ...given, ...chosen })
      )
  )

/** The options `IPC_OPTIONS` / `IPC_OPTIONS_<NAME>` may set for `IPC_TRANSPORT=ws` (see `WsConfigOptions`). */
export const options: TransportOptions.Declaration = declaration({})

/**
 * Makes a descriptor for `IPC_TRANSPORT=ws` with these options (see
 * `descriptor`); options set by configuration win over them.
 */
export const makeDescriptor = (given: WsTransport.WsTransportOptions = {}): Registry.TransportDescriptor => ({
  name: "ws",
  schemes: ["ws"],
  // what the program set in code is checked as the layer is built, as `WsTransport.layer` checks it
  make: Effect.map(WsAddressModule.layerOptionsOk(given), () => WsTransport.make(given)),
  options: declaration(given),
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
