/**
 * One open WebSocket as a link of core's channel engine (`ChannelEngine`),
 * on either side: the `ws` library's socket on the server, the global
 * `WebSocket` (Node's undici or a browser's) on the client. One message is one
 * binary WebSocket message; the goodbye is close code 1000, after everything
 * queued, and `close` waits for the peer's close frame to answer it (up to
 * the linger: the peer sends it once it has read everything before it; a
 * `close` that gives up drops the connection where the socket can, and warns
 * if `bufferedAmount` still held something). The engine waits while
 * `bufferedAmount` is over the high-water mark (a browser `WebSocket`
 * has no drain event: it is polled while anything is queued) and pauses the
 * socket when the inbox is full, where the socket can pause (the server's; a
 * browser `WebSocket` cannot). No `node:` imports: it runs in the browser.
 */
import * as ChannelEngine from "@effect-ipc/core/ChannelEngine"
import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as WsProtocol from "../WsProtocol.ts"

/** The socket operations the engine needs. */
export interface Socket {
  readonly bufferedAmount: () => number
  /** Sends one binary message (may throw). */
  readonly send: (data: Uint8Array) => void
  /** Starts the closing handshake. */
  readonly close: (code: number, reason: string) => void
  /** Drops the connection at once. */
  readonly terminate: () => void
  /** The error that stopped the socket writing, seen before its events run (a Node socket's `errored`). */
  readonly writeError?: (() => Error | null | undefined) | undefined
  readonly pause?: (() => void) | undefined
  readonly resume?: (() => void) | undefined
}

/** Options of a WebSocket channel. */
export interface LinkOptions {
  /** Largest message accepted and sent (default 64 MiB). */
  readonly maxMessageSize?: number | undefined
  /** Bytes queued on the socket above which `send` waits (default 4 MiB). */
  readonly highWaterMark?: number | undefined
  /** Incoming messages buffered before reading pauses, where the socket can pause (default 4096). */
  readonly maxBufferedMessages?: number | undefined
  /** Incoming bytes buffered before reading pauses, where the socket can pause (default 8 MiB). */
  readonly maxBufferedBytes?: number | undefined
  /** How long `close` waits for the peer's close frame before dropping the connection (default 2 s). */
  readonly lingerTimeout?: Duration.Input | undefined
  /** How long a `send` may wait for the peer to read before the peer is dropped (`Timeout`; default: no limit). */
  readonly writeTimeout?: Duration.Input | undefined
}

/** The typed error of a `ws` library socket's error (a message over `maxPayload`, a bad frame, a socket error). */
export const socketError = (error: Error, address: string): IpcError.IpcError => {
  const code = IpcError.errnoOf(error)
  const reason = code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH"
    ? "FrameTooLarge"
    : code !== undefined && code.startsWith("WS_ERR_")
    ? "Protocol"
    : IpcError.errnoReason(code, "ConnectionLost")
  return new IpcError.IpcError({ reason, detail: error.message, address, cause: error, errno: code })
}

/** The default largest message: 64 MiB. */
export const DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024

/** A channel and the handlers its socket's events go to. */
export interface Link {
  readonly channel: IpcChannel.IpcChannel
  /** A message arrived. */
  readonly message: (data: Uint8Array) => void
  /** The socket reported an error (its close event follows). */
  readonly error: (error: IpcError.IpcError) => void
  /** The socket closed with `code`. */
  readonly closed: (code: number, reason: string) => void
}

const closeDetail = (code: number, reason: string): string => {
  const said = reason === "" ? "" : `: ${reason}`
  switch (WsProtocol.reasonOfClose(code)) {
    case "FrameTooLarge":
      return `the peer refused a message over its size limit (close ${code}${said})`
    case "Protocol":
      return `the peer reported a WebSocket protocol error (close ${code}${said})`
    case "PeerRejected":
      return `the server refused this client (close ${code}${said})`
    default:
      return code === WsProtocol.CloseCode.abnormal
        ? "the connection was lost without a WebSocket close frame"
        : `the connection closed with code ${code}${said}`
  }
}

/** Makes the channel over an open socket; the caller wires the socket's events to the handlers. */
export const make = (
  socket: Socket,
  address: string,
  peer: IpcChannel.PeerInfo,
  options: LinkOptions = {}
): Link => {
  const maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE
  let sink: ChannelEngine.Sink | undefined
  let saidGoodbye = false
  // no drain event on a browser WebSocket: while anything is queued, look again (backing off to 16 ms)
  let poll: ReturnType<typeof setTimeout> | undefined
  let delay = 1
  const check = () => {
    poll = undefined
    sink?.writable()
    if (socket.bufferedAmount() > 0 && sink?.isEnding() === false) {
      delay = Math.min(delay * 2, 16)
      poll = setTimeout(check, delay)
    } else {
      delay = 1
    }
  }
  const engine = ChannelEngine.make({
    address,
    peer,
    maxMessageSize,
    highWaterMark: options.highWaterMark,
    maxBufferedMessages: options.maxBufferedMessages,
    maxBufferedBytes: options.maxBufferedBytes,
    lingerTimeout: options.lingerTimeout,
    writeTimeout: options.writeTimeout
  }, (given) => {
    sink = given
    return {
      write: (message) => {
        // a Node socket whose write failed (EPIPE, ECONNRESET: the peer is gone) takes more writes without a word,
        // holding none (`bufferedAmount` 0), until its error event runs, which a sender that never waits holds
        // off: 256 messages of 1 to 8 MiB "sent" to a SIGKILLed reader over 2 to 20 s (`WriteFailed.test.ts`)
        const broken = socket.writeError?.()
        if (broken !== undefined && broken !== null) return given.writesLost(socketError(broken, address))
        try {
          socket.send(message)
        } catch (cause) {
          const error = new IpcError.IpcError({
            reason: "Write",
            detail: `send failed: ${String(cause)}`,
            address,
            cause
          })
          given.lost(error)
          return Effect.fail(error)
        }
        if (poll === undefined && socket.bufferedAmount() > 0) poll = setTimeout(check, delay)
      },
      pending: socket.bufferedAmount,
      resume: () => socket.resume?.(),
      // The close frame goes after everything queued. It has left, and all that came before it has been
      // read, once the peer's close frame answers it: the socket's close event then finishes the channel,
      // which ends `close`'s wait. `sent` is never called earlier (the engine's linger bounds the wait):
      // when `close` returned at once, a process that exited then lost what `bufferedAmount` still held,
      // and the kernel resets a connection closed with unread input (dropping what it had not sent yet).
      // If `close` gives up, `pending` says how many bytes never left. A socket whose `close` throws is
      // closed already: its close event is on its way.
      goodbye: () => {
        saidGoodbye = true
        try {
          socket.close(WsProtocol.CloseCode.normal, "")
        } catch {
          // already closed
        }
        // read on, dropping what arrives (`message` ignores it now): the peer's close frame is behind it
        socket.resume?.()
      },
      destroy: () => {
        if (poll !== undefined) clearTimeout(poll)
        socket.terminate()
      }
    }
  })
  const lost = (error: IpcError.IpcError) => sink?.lost(error)
  return {
    channel: engine.channel,
    message: (data) => {
      if (sink === undefined || sink.isEnding()) return
      sink.heard()
      if (data.byteLength > maxMessageSize) {
        // a client socket has no receive limit of its own: refuse the message and the peer
        socket.close(WsProtocol.CloseCode.tooBig, "message too big")
        lost(IpcError.frameTooLarge(data.byteLength, maxMessageSize, address))
        return
      }
      if (!sink.message(data)) socket.pause?.()
    },
    error: lost,
    closed: (code, reason) => {
      if (sink === undefined) return
      const why = WsProtocol.reasonOfClose(code)
      if (why === undefined) {
        // a graceful end: the reader gets every message sent before it
        sink.peerClosed()
      } else if (saidGoodbye && code === WsProtocol.CloseCode.abnormal) {
        // the connection dropped after our goodbye, unanswered: what we sent may not have been read
        // (`IpcChannel.closeChecked` says so; sends and receives end as closed already)
        lost(IpcError.make("ConnectionLost", "the peer dropped the connection without answering our goodbye", address))
      } else {
        lost(IpcError.make(why, closeDetail(code, reason), address))
      }
      sink.closed()
    }
  }
}
