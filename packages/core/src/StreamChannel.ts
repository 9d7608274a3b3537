/**
 * An `IpcChannel` over Node byte streams (a socket, or a readable and a
 * writable pipe), speaking the `Framing` format. This is the engine every
 * byte-stream transport uses:
 *
 * - writes are coalesced: messages sent in one burst go out in one syscall
 *   (small messages are copied into 64 KiB batches, large ones are written
 *   from the caller's buffer without a copy);
 * - `send` waits while more than `highWaterMark` bytes are queued, and can
 *   drop the peer after `writeTimeout`;
 * - reading pauses when the inbox is full, so a slow consumer slows the sender;
 * - a graceful close sends a close frame; an end of stream without one, a
 *   frame cut off, a bad header or a frame over the limit is a typed error;
 * - optional heartbeats find peers that stopped answering.
 *
 * @since 0.1.0
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Latch from "effect/Latch"
import type * as Scope from "effect/Scope"
import type { Readable, Writable } from "node:stream"
import * as Framing from "./Framing.ts"
import * as Inbox from "./Inbox.ts"
import * as IpcChannel from "./IpcChannel.ts"
import * as IpcError from "./IpcError.ts"

/** Heartbeat settings: ping when idle, drop the peer when nothing arrives for `timeout`. */
export interface Heartbeat {
  /** How often to check, and to ping when nothing was sent. */
  readonly interval: Duration.Input
  /** Silence from the peer after which the channel fails with reason `Timeout`. */
  readonly timeout: Duration.Input
}

/** Options of a stream channel. */
export interface StreamChannelOptions {
  /** Largest frame accepted and sent (default 256 MiB). */
  readonly maxFrameSize?: number | undefined
  /** Queued outgoing bytes above which `send` waits (default 4 MiB). */
  readonly highWaterMark?: number | undefined
  /** How long a `send` may wait for the peer to read before the peer is dropped (default: no limit). */
  readonly writeTimeout?: Duration.Input | undefined
  /** How long a frame may take to arrive once it has started, before the peer is dropped (default 30 s). */
  readonly frameTimeout?: Duration.Input | undefined
  /** Incoming messages buffered before reading pauses (default 4096). */
  readonly maxBufferedMessages?: number | undefined
  /** Incoming bytes buffered before reading pauses (default 8 MiB). */
  readonly maxBufferedBytes?: number | undefined
  /** Heartbeats, off by default (local transports see a dead peer at once). */
  readonly heartbeat?: Heartbeat | undefined
  /** How long `close` waits for queued writes to reach the OS (default 2 s). */
  readonly lingerTimeout?: Duration.Input | undefined
}

/** The streams a channel runs over. A socket is both `readable` and `writable`. */
export interface StreamPair {
  readonly readable: Readable
  readonly writable: Writable
}

const BATCH_SIZE = 64 * 1024
const COPY_LIMIT = 8 * 1024
const EMPTY = new Uint8Array(0)

const toBuffer = (u: Uint8Array): Buffer => Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength)

/**
 * Makes a channel over `streams`. The channel owns the streams: it destroys
 * them when it closes. Not scoped: the caller closes it (see `makeScoped`).
 */
export const make = (
  streams: StreamPair,
  address: string,
  peer: IpcChannel.PeerInfo = {},
  options: StreamChannelOptions = {}
): Effect.Effect<IpcChannel.IpcChannel> =>
  Effect.sync(() => {
    const { readable, writable } = streams
    const maxFrameSize = options.maxFrameSize ?? Framing.DEFAULT_MAX_FRAME_SIZE
    const highWaterMark = Math.max(options.highWaterMark ?? 4 * 1024 * 1024, writable.writableHighWaterMark)
    const writeTimeout = options.writeTimeout
    const linger = Duration.toMillis(Duration.fromInputUnsafe(options.lingerTimeout ?? "2 seconds"))
    const frameTimeout = Duration.toMillis(Duration.fromInputUnsafe(options.frameTimeout ?? "30 seconds"))
    const closedErr = IpcError.make("Closed", "the channel is closed", address)

    let failure: IpcError.IpcError | undefined
    let closing = false
    let finished = false
    let peerSaidClose = false
    let lastReceived = Date.now()
    let lastSent = Date.now()
    let heartbeatTimer: ReturnType<typeof setInterval> | undefined
    const closed = Deferred.makeUnsafe<void>()
    const writableLatch = Latch.makeUnsafe(true)

    const inbox = Inbox.make({
      maxMessages: options.maxBufferedMessages,
      maxBytes: options.maxBufferedBytes,
      onResume: () => {
        if (!finished) readable.resume()
      }
    })

    // ---- writing ------------------------------------------------------
    let batch = Buffer.allocUnsafe(BATCH_SIZE)
    let batchStart = 0
    let batchFill = 0
    let out: Array<Buffer> = []
    let queued = 0
    let flushScheduled = false

    const seal = () => {
      if (batchFill > batchStart) {
        out.push(batch.subarray(batchStart, batchFill))
        batchStart = batchFill
      }
    }

    const enqueue = (kind: Framing.Kind, payload: Uint8Array) => {
      const length = payload.byteLength
      const total = Framing.HEADER_SIZE + length
      if (length <= COPY_LIMIT) {
        if (batchFill + total > batch.byteLength) {
          seal()
          batch = Buffer.allocUnsafe(BATCH_SIZE)
          batchStart = 0
          batchFill = 0
        }
        Framing.writeHeader(batch, batchFill, kind, length)
        batch.set(payload, batchFill + Framing.HEADER_SIZE)
        batchFill += total
      } else {
        seal()
        const header = Buffer.allocUnsafe(Framing.HEADER_SIZE)
        Framing.writeHeader(header, 0, kind, length)
        out.push(header, toBuffer(payload))
      }
      queued += total
      if (!flushScheduled) {
        flushScheduled = true
        queueMicrotask(flush)
      }
    }

    const pendingBytes = () => queued + writable.writableLength

    function flush() {
      flushScheduled = false
      seal()
      if (out.length === 0 || finished) return
      const chunks = out
      out = []
      queued = 0
      lastSent = Date.now()
      try {
        if (chunks.length === 1) {
          writable.write(chunks[0])
        } else {
          writable.cork()
          for (const chunk of chunks) writable.write(chunk)
          writable.uncork()
        }
      } catch (cause) {
        fail(IpcError.fromSystemError(cause, "Write", "write failed", address))
        return
      }
      if (pendingBytes() <= highWaterMark) Latch.openUnsafe(writableLatch)
    }

    const afterWait = Effect.suspend(() =>
      failure !== undefined ? Effect.fail(failure) : closing ? Effect.fail(closedErr) : Effect.void
    )
    const waitWritable: Effect.Effect<void, IpcError.IpcError> = writeTimeout === undefined
      ? Effect.flatMap(writableLatch.await, () => afterWait)
      : writableLatch.await.pipe(
        Effect.timeoutOrElse({
          duration: writeTimeout,
          orElse: () =>
            Effect.suspend(() => {
              const error = IpcError.make(
                "Timeout",
                `the peer did not read for ${Duration.format(Duration.fromInputUnsafe(writeTimeout))}: dropped`,
                address
              )
              fail(error)
              return Effect.fail(error)
            })
        }),
        Effect.flatMap(() => afterWait)
      )

    const sendNow = (message: Uint8Array): Effect.Effect<void, IpcError.IpcError> => {
      if (failure !== undefined) return Effect.fail(failure)
      if (closing) return Effect.fail(closedErr)
      if (message.byteLength > maxFrameSize) {
        return Effect.fail(IpcError.frameTooLarge(message.byteLength, maxFrameSize, address))
      }
      enqueue(Framing.Kind.data, message)
      if (pendingBytes() <= highWaterMark) return Effect.void
      Latch.closeUnsafe(writableLatch)
      return waitWritable
    }
    const send = (message: Uint8Array): Effect.Effect<void, IpcError.IpcError> => Effect.suspend(() => sendNow(message))

    // ---- reading ------------------------------------------------------
    const decoder = new Framing.Decoder(maxFrameSize)
    const onFrame: Framing.FrameHandler = (kind, payload) => {
      framesSeen++
      if (frameTimer !== undefined) {
        clearTimeout(frameTimer)
        frameTimer = undefined
      }
      switch (kind) {
        case Framing.Kind.data:
          if (!inbox.push(payload)) readable.pause()
          break
        case Framing.Kind.close:
          peerSaidClose = true
          break
        case Framing.Kind.ping:
          if (!closing) enqueue(Framing.Kind.pong, payload.slice())
          break
        case Framing.Kind.pong:
          break
      }
    }
    // a frame that has started must finish within frameTimeout (a 1-byte-per-second peer is dropped)
    let frameTimer: ReturnType<typeof setTimeout> | undefined
    let framesSeen = 0
    const onFrameTimeout = (frameAtStart: number) => () => {
      frameTimer = undefined
      if (decoder.inFrame && framesSeen === frameAtStart) {
        fail(IpcError.make("Timeout", `a frame took longer than ${frameTimeout} ms to arrive`, address))
      }
    }
    const onData = (chunk: Buffer) => {
      lastReceived = Date.now()
      const error = decoder.push(chunk, onFrame)
      if (error !== undefined) return fail(new IpcError.IpcError({ ...error, address }))
      if (!decoder.inFrame) {
        if (frameTimer !== undefined) clearTimeout(frameTimer)
        frameTimer = undefined
      } else if (frameTimer === undefined) {
        frameTimer = setTimeout(onFrameTimeout(framesSeen), frameTimeout)
        frameTimer.unref()
      }
    }
    const onEnd = () => {
      if (decoder.inFrame) {
        fail(IpcError.make("ConnectionLost", "the stream ended in the middle of a frame", address))
      } else if (peerSaidClose || closing) {
        inbox.end()
        // the peer is done: answer its close frame with ours, keeping what it sent for the reader
        if (!closing) {
          closing = true
          endWritingNow(() => {})
        }
      } else {
        fail(IpcError.make("ConnectionLost", "the peer ended the stream without closing the channel", address))
      }
    }
    const onError = (cause: Error) => {
      fail(IpcError.fromSystemError(cause, "ConnectionLost", "the connection failed", address))
    }
    const onClosed = () => {
      if (!inbox.isDone()) onEnd()
      teardown()
    }

    // ---- lifecycle ----------------------------------------------------
    function teardown() {
      if (finished) return
      finished = true
      readable.off("data", onData)
      if (frameTimer !== undefined) clearTimeout(frameTimer)
      if (heartbeatTimer !== undefined) clearInterval(heartbeatTimer)
      readable.destroy()
      if (writable !== (readable as unknown)) writable.destroy()
      Latch.openUnsafe(writableLatch)
      if (!inbox.isDone()) inbox.shutdown(failure ?? closedErr)
      Deferred.doneUnsafe(closed, Effect.void)
    }

    function fail(error: IpcError.IpcError) {
      if (failure !== undefined || finished) return
      failure = error
      inbox.fail(error)
      teardown()
    }

    // sends our close frame, ends the writing side, and lets the streams go once the peer has it;
    // `done` runs once the writing side has ended (or after `linger`); returns a cancel
    function endWritingNow(done: () => void): () => void {
      enqueue(Framing.Kind.close, EMPTY)
      flush()
      const timer = setTimeout(() => {
        teardown()
        done()
      }, linger)
      writable.end(() => {
        clearTimeout(timer)
        if (writable === (readable as unknown) && !readable.readableEnded && !finished) {
          // a socket waits (briefly) for the peer's end, so nothing it still sends is reset
          const t = setTimeout(teardown, linger)
          t.unref()
          readable.once("close", () => clearTimeout(t))
        } else {
          teardown()
        }
        done()
      })
      return () => clearTimeout(timer)
    }
    const endWriting: Effect.Effect<void> = Effect.callback<void>((resume) => {
      const cancel = endWritingNow(() => resume(Effect.void))
      return Effect.sync(cancel)
    })

    const close: Effect.Effect<void> = Effect.suspend(() => {
      if (closing || finished) return Effect.void
      closing = true
      inbox.shutdown(closedErr)
      return endWriting
    })

    writable.on("drain", () => {
      if (pendingBytes() <= highWaterMark) Latch.openUnsafe(writableLatch)
    })
    readable.on("data", onData)
    readable.on("end", onEnd)
    readable.on("error", onError)
    readable.on("close", onClosed)
    if (writable !== (readable as unknown)) {
      writable.on("error", onError)
      writable.on("close", () => {
        if (!closing) onError(Object.assign(new Error("the peer closed its reading end"), { code: "EPIPE" }))
      })
    }

    if (options.heartbeat !== undefined) {
      const interval = Duration.toMillis(Duration.fromInputUnsafe(options.heartbeat.interval))
      const timeout = Duration.toMillis(Duration.fromInputUnsafe(options.heartbeat.timeout))
      // a plain timer, cleared by teardown: no fiber outside the user's runtime
      heartbeatTimer = setInterval(() => {
        const now = Date.now()
        if (now - lastReceived > timeout) {
          fail(IpcError.make("Timeout", `no word from the peer for ${timeout} ms`, address))
        } else if (now - lastSent >= interval && !closing) {
          enqueue(Framing.Kind.ping, EMPTY)
        }
      }, interval)
    }

    return IpcChannel.make({ address, peer, inbox, send, close, closed: Deferred.await(closed) })
  })

/** Like `make`, and closes the channel when the scope closes. */
export const makeScoped = (
  streams: StreamPair,
  address: string,
  peer?: IpcChannel.PeerInfo,
  options?: StreamChannelOptions
): Effect.Effect<IpcChannel.IpcChannel, never, Scope.Scope> =>
  Effect.acquireRelease(make(streams, address, peer, options), (channel) => channel.close)
