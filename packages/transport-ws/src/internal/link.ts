/**
 * The channel engine over one open WebSocket, on either side: the `ws`
 * library's socket on the server, the global `WebSocket` (Node's undici or a
 * browser's) on the client. One message is one binary WebSocket message.
 * Sending waits while `bufferedAmount` is over the high-water mark; reading
 * pauses the socket when the inbox is full, where the socket can pause (the
 * server's; a browser `WebSocket` cannot). No `node:` imports: it runs in the
 * browser.
 */
import * as Inbox from "@effect-ipc/core/Inbox"
import * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
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
  const highWaterMark = options.highWaterMark ?? 4 * 1024 * 1024
  const linger = Duration.toMillis(Duration.fromInputUnsafe(options.lingerTimeout ?? "2 seconds"))
  const closedErr = IpcError.make("Closed", "the channel is closed", address)

  let failure: IpcError.IpcError | undefined
  let closing = false
  let finished = false
  let lingerTimer: ReturnType<typeof setTimeout> | undefined
  const done = Deferred.makeUnsafe<void>()

  const inbox = Inbox.make({
    maxMessages: options.maxBufferedMessages,
    maxBytes: options.maxBufferedBytes,
    onResume: () => {
      if (!finished) socket.resume?.()
    }
  })

  const finish = () => {
    if (finished) return
    finished = true
    if (lingerTimer !== undefined) clearTimeout(lingerTimer)
    if (!inbox.isDone()) inbox.shutdown(failure ?? closedErr)
    Deferred.doneUnsafe(done, Effect.void)
  }

  const fail = (error: IpcError.IpcError, terminate: boolean) => {
    if (failure !== undefined || finished) return
    failure = error
    inbox.fail(error)
    if (terminate) socket.terminate()
    finish()
  }

  const waitWritable = Effect.callback<void, IpcError.IpcError>((resume) => {
    let delay = 1
    let timer: ReturnType<typeof setTimeout> | undefined
    const check = () => {
      if (failure !== undefined) return resume(Effect.fail(failure))
      if (closing || finished) return resume(Effect.fail(closedErr))
      if (socket.bufferedAmount() <= highWaterMark) return resume(Effect.void)
      // no drain event on a browser WebSocket: poll, backing off to 16 ms
      delay = Math.min(delay * 2, 16)
      timer = setTimeout(check, delay)
    }
    timer = setTimeout(check, delay)
    return Effect.sync(() => clearTimeout(timer))
  })

  const send = (message: Uint8Array): Effect.Effect<void, IpcError.IpcError> =>
    Effect.suspend(() => {
      if (failure !== undefined) return Effect.fail(failure)
      if (closing || finished) return Effect.fail(closedErr)
      if (message.byteLength > maxMessageSize) {
        return Effect.fail(IpcError.frameTooLarge(message.byteLength, maxMessageSize, address))
      }
      try {
        socket.send(message)
      } catch (cause) {
        const error = new IpcError.IpcError({
          reason: "Write",
          detail: `send failed: ${String(cause)}`,
          address,
          cause
        })
        fail(error, true)
        return Effect.fail(error)
      }
      return socket.bufferedAmount() <= highWaterMark ? Effect.void : waitWritable
    })

  const close: Effect.Effect<void> = Effect.suspend(() => {
    if (finished) return Effect.void
    if (!closing) {
      closing = true
      inbox.shutdown(closedErr)
      try {
        socket.close(WsProtocol.CloseCode.normal, "")
      } catch {
        socket.terminate()
        finish()
        return Effect.void
      }
      // the peer answers our close frame; one that does not is dropped after `linger`
      lingerTimer = setTimeout(() => {
        socket.terminate()
        finish()
      }, linger)
    }
    return Deferred.await(done)
  })

  return {
    channel: IpcChannel.make({ address, peer, inbox, send, close, closed: Deferred.await(done) }),
    message: (data) => {
      if (finished || closing) return
      if (data.byteLength > maxMessageSize) {
        // a client socket has no receive limit of its own: refuse the message and the peer
        fail(IpcError.frameTooLarge(data.byteLength, maxMessageSize, address), false)
        socket.close(WsProtocol.CloseCode.tooBig, "message too big")
        return
      }
      if (!inbox.push(data)) socket.pause?.()
    },
    error: (error) => fail(error, false),
    closed: (code, reason) => {
      if (finished) return
      const why = WsProtocol.reasonOfClose(code)
      if (why === undefined || (closing && code === WsProtocol.CloseCode.abnormal)) {
        // a graceful end: the reader gets every message sent before it
        inbox.end()
        closing = true
        finish()
      } else {
        fail(IpcError.make(why, closeDetail(code, reason), address), false)
      }
    }
  }
}
