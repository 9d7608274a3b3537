/**
 * What effect-ipc says over a WebSocket. One effect-ipc message is one binary
 * WebSocket message; a graceful close is close code 1000. The handshake
 * offers the subprotocols `effect-ipc.v1`, `effect-ipc.refused` and
 * `effect-ipc.token.<token>`: the server selects `effect-ipc.v1` when it
 * accepts the client, or `effect-ipc.refused` and closes at once with a code
 * saying why (4401 token, 4403 origin or host), so that a browser client,
 * which never sees an HTTP status, still gets a typed reason. A client that
 * does not offer `effect-ipc.refused` is refused with a plain HTTP 401 / 403.
 * Runs in the browser (no `node:` imports).
 *
 * @since 0.1.0
 */
import type * as IpcError from "@effect-ipc/core/IpcError"

/** The subprotocol the server selects when it accepts a client. */
export const subprotocol = "effect-ipc.v1"

/** The subprotocol the server selects when it refuses a client (and closes with a `CloseCode`). */
export const refusedSubprotocol = "effect-ipc.refused"

/** Prefix of the subprotocol that carries the token: `effect-ipc.token.<token>`. */
export const tokenPrefix = "effect-ipc.token."

/** The WebSocket close codes effect-ipc uses or reads. */
export const CloseCode = {
  /** A graceful close: the reader sees the end of input after every message sent. */
  normal: 1000,
  /** The peer is going away (a page unloading, a server shutting down): also a graceful end. */
  goingAway: 1001,
  /** The peer broke the WebSocket protocol. */
  protocolError: 1002,
  /** The connection ended without a close frame. */
  abnormal: 1006,
  /** A message over the receiver's limit. */
  tooBig: 1009,
  /** A message over the limit of a browser-API client (which may not send 1009). */
  clientTooBig: 4009,
  /** The token was missing or wrong. */
  tokenRefused: 4401,
  /** The page's `Origin` (or the request's `Host`) is not allowed. */
  originRefused: 4403
} as const

/** The `IpcError` reason a close code stands for; `undefined` for a graceful end. */
export const reasonOfClose = (code: number): IpcError.IpcErrorReason | undefined => {
  switch (code) {
    case CloseCode.normal:
    case CloseCode.goingAway:
      return undefined
    case CloseCode.tooBig:
    case CloseCode.clientTooBig:
      return "FrameTooLarge"
    case CloseCode.protocolError:
    case 1003:
    case 1007:
      return "Protocol"
    case CloseCode.tokenRefused:
    case CloseCode.originRefused:
      return "PeerRejected"
    default:
      return "ConnectionLost"
  }
}

/** The subprotocols a client offers: `effect-ipc.v1`, `effect-ipc.refused`, and the token's if it has one. */
export const offer = (token: string | undefined): Array<string> =>
  token === undefined ? [subprotocol, refusedSubprotocol] : [subprotocol, refusedSubprotocol, `${tokenPrefix}${token}`]
