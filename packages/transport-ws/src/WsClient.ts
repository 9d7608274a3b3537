/**
 * The `ws://` client, on the global `WebSocket` (a browser's, or Node's own
 * since Node 22): it runs in a page as well as in Node, and imports nothing
 * from `node:`. The token (see `WsServer`) is taken from the options or from
 * the address's `?token=...`, and is sent in the handshake's subprotocol list,
 * never in the URL. A server that refuses this client (wrong or missing
 * token, an origin or host it does not allow) fails `dial` with
 * `PeerRejected`; nothing listening fails it with `NotFound`.
 *
 * A browser's `WebSocket` cannot pause reading: messages a slow consumer has
 * not taken yet are buffered in memory (sending is back-pressured, through
 * `bufferedAmount`).
 *
 * @since 0.1.0
 */
import * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Transport from "@effect-ipc/core/Transport"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Link from "./internal/link.ts"
import * as WsAddress from "./WsAddress.ts"
import * as WsProtocol from "./WsProtocol.ts"

/** Options of the client. */
export interface WsClientOptions extends Link.LinkOptions {
  /** The server's token; when absent, the address's `?token=...`, then `tokenLookup`. */
  readonly token?: string | undefined
  /** Finds the token of an address that carries none (Node: `WsTransport` reads the server's token file). */
  readonly tokenLookup?: ((address: WsAddress.WsAddress) => string | undefined) | undefined
  /**
   * Extra handshake headers, Node only (a browser sets `Origin` itself and
   * takes no headers); tests use it to pose as a page of another origin.
   */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /**
   * Opens the socket (default: the global `WebSocket`). `WsTransport` in Node
   * gives the `ws` library's, which can drop a connection at once and pause
   * reading: the browser API can do neither.
   */
  readonly connect?: Connect | undefined
  /** How long the server may take to answer the WebSocket handshake before `dial` fails with `Timeout` (default 10 s). */
  readonly handshakeTimeout?: Duration.Input | undefined
}

/**
 * What the client uses of a WebSocket: the browser API, plus `terminate`,
 * `pause` and `resume` where the implementation has them.
 */
export interface ClientSocket {
  /** How binary messages arrive: set to `"arraybuffer"`. */
  binaryType: string
  /** The subprotocol the server chose. */
  readonly protocol: string
  /** Bytes queued to send. */
  readonly bufferedAmount: number
  /** Sends one binary message. */
  send(data: Uint8Array): void
  /** Starts the closing handshake. */
  close(code?: number, reason?: string): void
  /** The handshake completed. */
  addEventListener(type: "open", listener: () => void): void
  /** A message arrived. */
  addEventListener(type: "message", listener: (event: { readonly data: unknown }) => void): void
  /** An error (a browser's carries nothing; the `ws` library's carries it). */
  addEventListener(type: "error", listener: (event: { readonly error?: unknown }) => void): void
  /** The connection closed, with the close frame's code and reason. */
  addEventListener(
    type: "close",
    listener: (event: { readonly code: number; readonly reason: string }) => void
  ): void
  /** Drops the connection at once, where the implementation can. */
  readonly terminate?: (() => void) | undefined
  /** The error that stopped the connection writing, before its error event runs, where the implementation can tell. */
  readonly writeError?: (() => Error | null | undefined) | undefined
  /** Stops reading, where the implementation can. */
  readonly pause?: (() => void) | undefined
  /** Reads again after `pause`. */
  readonly resume?: (() => void) | undefined
}

/** Opens a socket to `url`, offering `protocols`, with extra handshake `headers` where it can send them. */
export type Connect = (
  url: string,
  protocols: Array<string>,
  headers: Readonly<Record<string, string>> | undefined
) => ClientSocket

/** The global `WebSocket` (headers through undici's options form, in Node). */
const connectGlobal: Connect = (url, protocols, headers) =>
  headers === undefined
    ? new WebSocket(url, protocols)
    : new WebSocket(url, { protocols, headers: { ...headers } } as unknown as Array<string>)

const textEncoder = new TextEncoder()

const toBytes = (data: unknown): Uint8Array =>
  typeof data === "string"
    ? textEncoder.encode(data)
    : data instanceof ArrayBuffer
    ? new Uint8Array(data)
    : ArrayBuffer.isView(data)
    ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
    : new Uint8Array(0)

const socketOf = (ws: ClientSocket): Link.Socket => ({
  bufferedAmount: () => ws.bufferedAmount,
  send: (data) => ws.send(data),
  // a browser-API socket may only close with 1000 or 3000-4999
  close: (code, reason) =>
    ws.close(code === WsProtocol.CloseCode.tooBig ? WsProtocol.CloseCode.clientTooBig : code, reason),
  // a browser's socket can only start the closing handshake (which a peer that does not read never answers)
  terminate: () => ws.terminate === undefined ? ws.close() : ws.terminate(),
  writeError: ws.writeError,
  pause: ws.pause === undefined ? undefined : () => ws.pause!(),
  resume: ws.resume === undefined ? undefined : () => ws.resume!()
})

const open = (
  address: WsAddress.WsAddress,
  token: string | undefined,
  options: WsClientOptions
): Effect.Effect<IpcChannel.IpcChannel, IpcError.IpcError> =>
  Effect.callback<IpcChannel.IpcChannel, IpcError.IpcError>((resumeOnce) => {
    let settled = false
    const resume = (result: Effect.Effect<IpcChannel.IpcChannel, IpcError.IpcError>) => {
      if (settled) return
      settled = true
      resumeOnce(result)
    }
    const shown = address.redacted
    const protocols = WsProtocol.offer(token)
    let ws: ClientSocket
    try {
      ws = (options.connect ?? connectGlobal)(address.url, protocols, options.headers)
    } catch (cause) {
      return resume(
        Effect.fail(new IpcError.IpcError({ reason: "InvalidAddress", detail: String(cause), address: shown, cause }))
      )
    }
    ws.binaryType = "arraybuffer"
    let link: Link.Link | undefined
    let refused = false
    ws.addEventListener("open", () => {
      if (ws.protocol === WsProtocol.refusedSubprotocol) {
        // the server closes at once, with a code saying why
        refused = true
        return
      }
      if (ws.protocol !== WsProtocol.subprotocol) {
        ws.close(WsProtocol.CloseCode.normal, "")
        return resume(
          Effect.fail(
            IpcError.make("Protocol", `the server does not speak ${WsProtocol.subprotocol} (it chose none)`, shown)
          )
        )
      }
      link = Link.make(socketOf(ws), shown, { description: shown }, options)
      resume(Effect.succeed(link.channel))
    })
    ws.addEventListener("message", (event) => link?.message(toBytes(event.data)))
    // a browser's error event carries nothing (the close event that follows says what is known); the
    // `ws` library's carries the error (a message over the limit: FrameTooLarge), and throws it if unheard
    ws.addEventListener("error", (event) => {
      if (link !== undefined && event.error instanceof Error) link.error(Link.socketError(event.error, shown))
    })
    ws.addEventListener("close", (event) => {
      if (link !== undefined) return link.closed(event.code, event.reason)
      if (refused) {
        const said = event.reason === "" ? "" : `: ${event.reason}`
        return resume(
          Effect.fail(
            IpcError.make("PeerRejected", `the server refused this client (close ${event.code}${said})`, shown)
          )
        )
      }
      resume(Effect.fail(IpcError.make("NotFound", "no effect-ipc WebSocket server answered", shown)))
    })
    return Effect.sync(() => {
      if (link === undefined) socketOf(ws).terminate()
    })
  })

/**
 * Opens a channel to `address` (`ws://host:port/path[?token=...]`); the
 * channel closes with the scope. Fails with `NotFound` when nothing answers,
 * `PeerRejected` when the server refuses this client, `Timeout` when it does
 * not answer the handshake within `handshakeTimeout`.
 */
export const dial = (
  address: string,
  options: WsClientOptions = {}
): Effect.Effect<IpcChannel.IpcChannel, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    yield* WsAddress.optionsOk(options, address)
    const parsed = yield* Effect.flatMap(WsAddress.parse(address), WsAddress.dialable)
    // a lookup is the caller's code: one that throws fails the dial typed (it was a defect)
    const token = options.token ?? parsed.token ?? (yield* Effect.try({
      try: () => options.tokenLookup?.(parsed),
      catch: (cause) =>
        IpcError.make(
          "InvalidOption",
          `tokenLookup threw: ${cause instanceof Error ? cause.message : String(cause)}`,
          parsed.redacted
        )
    }))
    if (token !== undefined && !WsAddress.isValidToken(token)) {
      return yield* WsAddress.invalidToken(options.token !== undefined, parsed.redacted)
    }
    if (options.connect === undefined && typeof WebSocket === "undefined") {
      return yield* IpcError.make("UnsupportedPlatform", "there is no global WebSocket here (Node 22+ has one)")
    }
    const timeout = options.handshakeTimeout ?? "10 seconds"
    // the handshake may be interrupted (the socket is dropped), or time out: a silent server holds nobody
    const opening = open(parsed, token, options).pipe(
      Effect.timeoutOrElse({
        duration: timeout,
        orElse: () =>
          Effect.fail(
            IpcError.make(
              "Timeout",
              `no answer to the WebSocket handshake within ${Duration.format(Duration.fromInputUnsafe(timeout))}`,
              parsed.redacted
            )
          )
      }),
      Effect.interruptible
    )
    return yield* Effect.acquireRelease(opening, (channel) => channel.close)
  })

/**
 * The client as a transport: `dial` only (a page cannot listen; in Node,
 * `WsTransport.make` also listens).
 */
export const make = (options: WsClientOptions = {}): Transport.TransportShape => ({
  schemes: WsAddress.schemes,
  listen: (address) =>
    Effect.fail(
      IpcError.make(
        "UnsupportedPlatform",
        "the ws:// client cannot listen: use WsTransport (Node) for a server",
        WsAddress.redact(address)
      )
    ),
  dial: (address) => dial(address, options)
})

/** The client as the `Transport` service (instrumented: see `Transport.instrument`), e.g. in a page. */
export const layer = (options?: WsClientOptions): Layer.Layer<Transport.Transport> =>
  Layer.succeed(Transport.Transport, Transport.instrument(make(options)))
