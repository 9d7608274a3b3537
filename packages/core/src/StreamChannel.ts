/**
 * An `IpcChannel` over Node byte streams (a socket, or a readable and a
 * writable pipe), speaking the `Framing` format. This is the engine every
 * byte-stream transport uses:
 *
 * - writes are coalesced: the first message of a burst goes out at once, the
 *   rest of the burst in one more syscall (small messages are copied into a
 *   64 KiB batch, written into again once a socket has taken it all, large
 *   ones into buffers reused once written: the caller may reuse its buffer
 *   once `send` returns; short text an RPC serialization gives, such as
 *   JSON, is encoded straight into the batch);
 * - `send` waits while more than `highWaterMark` bytes are queued, and can
 *   drop the peer after `writeTimeout`;
 * - reading pauses when the inbox is full, so a slow consumer slows the sender;
 * - a graceful close sends a close frame; an end of stream without one, a
 *   frame cut off, a bad header or a frame over the limit is a typed error;
 * - optional heartbeats find peers that stopped answering.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { Readable, Writable } from "node:stream"
import * as ChannelEngine from "./ChannelEngine.ts"
import * as Framing from "./Framing.ts"
import * as Bytes from "./internal/bytes.ts"
import { MAX_TIMER_MILLIS } from "./internal/timer.ts"
import type * as IpcChannel from "./IpcChannel.ts"
import * as IpcError from "./IpcError.ts"

/** Heartbeat settings: ping when idle, drop the peer when nothing arrives for `timeout`. */
export type Heartbeat = ChannelEngine.Heartbeat

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
  /**
   * Calls its argument once the process at the other end has exited (a child
   * process): sends fail from then on, and the input, read on, ends once it
   * stays quiet for the linger even if a process the child started holds the
   * streams open (`ConnectionLost`).
   */
  readonly peerExited?: ((then: () => void) => void) | undefined
  /**
   * How the process at the other end ended, if it has (`exited with code 3`, `was killed by SIGKILL`):
   * a write that finds the other end gone (`EPIPE`) or the exit itself then fails naming it.
   */
  readonly peerExit?: (() => string | undefined) | undefined
  /**
   * `false` where one stream's medium has no half-close (a pipe on Windows): the peer sees our goodbye's
   * end only as the stream closes, too late to answer it, so an end without its answer is no loss there
   * (`IpcChannel.closeChecked` cannot tell). Default `true`.
   */
  readonly halfClose?: boolean | undefined
  /**
   * `false`: the channel ends as soon as its goodbye left, without reading on to the peer's answer
   * (separate streams whose end must not wait on a peer that may never answer: a FIFO listener's
   * conversation, which holds the address until it ends). The peer's later writes then fail (EPIPE).
   * Default `true`.
   */
  readonly awaitsAnswer?: boolean | undefined
}

const BATCH_SIZE = 64 * 1024
const COPY_LIMIT = 8 * 1024
const EMPTY = new Uint8Array(0)

// written large messages' buffers kept for reuse, per channel
const SPARE_LIMIT = 4 * 1024 * 1024

// Node's socket class (core also loads in browsers, which have none). A socket (a Unix socket, a pipe)
// has handed a chunk to the OS when its write calls back, so the chunk may be written into again;
// another stream (an in-process pair) may still hold it, or have passed it on to its reader
const NetSocket = (globalThis as { process?: NodeJS.Process }).process?.getBuiltinModule?.("node:net")?.Socket
const copiesOut = (writable: Writable): boolean => NetSocket !== undefined && writable instanceof NetSocket

// a pipe's reading end closed by the peer
const readerGone = Object.assign(new Error("the peer closed its reading end"), { code: "EPIPE" })

// how the process at the other end ended (`exited with code 3`), said as the channel's errors say it
const atOtherEnd = (how: string): string => `the process at the other end ${how}`

// an input that ended without the peer's goodbye (or failed: `cause`): why, and how the process there ended where
// that is known
const endedBadly = (what: string, how: string | undefined, address: string, cause?: Error): IpcError.IpcError => {
  const detail = how === undefined ? what : `${what}: ${atOtherEnd(how)}`
  return cause === undefined
    ? IpcError.make("ConnectionLost", detail, address)
    : IpcError.fromSystemError(cause, "ConnectionLost", detail, address)
}

// the other end of a socket went while we read or wrote (a child that exits with input it never read resets it)
const isPeerReset = (cause: Error): boolean => {
  const errno = IpcError.errnoOf(cause)
  return errno === "ECONNRESET" || errno === "EPIPE"
}

// how long an input that ended waits for the process at the other end to be seen exited, to say how it ended
const EXIT_WAIT_MILLIS = 200

// the process at the other end exited (its streams may live on in a process it started)
const peerGone = new Error(atOtherEnd("exited"))

// why a stream that failed or went cannot be written: its error, if it has one
const lostBy = (cause: Error | null | undefined, address: string): IpcError.IpcError =>
  cause == null
    ? IpcError.make("ConnectionLost", "the connection was closed before the channel could write", address)
    : IpcError.fromSystemError(cause, "ConnectionLost", "the connection failed", address)

/** What a stream channel's link is given besides its streams. */
interface LinkSettings {
  readonly address: string
  readonly frameTimeoutMillis: number
  readonly maxFrameSize: number
  /** How long an input may stay quiet once our output is lost. */
  readonly quietMillis: number
  /** Pongs queued, and output, past which reading stops until the output drains (see `stopForPongs`). */
  readonly highWaterMark: number
}

// the link of a channel over `streams` (see `ChannelEngine`): frames written into 64 KiB batches,
// one write (corked) per flush; incoming chunks decoded in place; a close frame as the goodbye
const link = (
  streams: StreamPair,
  { address, frameTimeoutMillis, highWaterMark, maxFrameSize, quietMillis }: LinkSettings
) =>
(sink: ChannelEngine.Sink): ChannelEngine.Link => {
  const { readable, writable } = streams
  const duplex = writable === (readable as unknown)
  // a write that found the other end gone, or its exit: how the process there ended, where that is known
  const ended = (cause: Error): Error => {
    if (streams.peerExit === undefined || (cause !== peerGone && IpcError.errnoOf(cause) !== "EPIPE")) return cause
    const how = streams.peerExit()
    return how === undefined ? cause : new Error(atOtherEnd(how))
  }
  const lost = (cause: Error | null | undefined): IpcError.IpcError =>
    lostBy(cause == null ? cause : ended(cause), address)
  const reuse = copiesOut(writable)
  let ending = false // our close frame is queued
  let destroyed = false
  let peerSaidClose = false
  let endSeen = false

  // ---- writing ------------------------------------------------------
  let batch = Buffer.allocUnsafe(BATCH_SIZE)
  let batchStart = 0
  let batchFill = 0
  let out: Array<Uint8Array> = []
  // per entry of `out`: the spare buffer it was copied into, recycled once the stream has written it
  let owners: Array<Uint8Array | undefined> = []
  let queued = 0

  // large messages are copied too (a caller may reuse its buffer once `send` returns, and the stream
  // writes later), over a socket into buffers that are used again once written: a copy into memory
  // already mapped costs a tenth of a fresh allocation at 1 MiB (see bench/README.md, "1 MiB messages")
  const spares = new Bytes.Spares(SPARE_LIMIT)
  const recycle = (spare: Uint8Array) => () => {
    if (!destroyed) spares.give(spare)
  }

  const seal = () => {
    if (batchFill > batchStart) {
      out.push(batch.subarray(batchStart, batchFill))
      owners.push(undefined)
      batchStart = batchFill
    }
  }

  // room for `total` more bytes in the batch (a fresh one when it is full)
  const room = (total: number): void => {
    if (batchFill + total > batch.byteLength) {
      seal()
      batch = Buffer.allocUnsafe(BATCH_SIZE)
      batchStart = 0
      batchFill = 0
    }
  }

  const enqueue = (kind: Framing.Kind, payload: Uint8Array): void => {
    const length = payload.byteLength
    const total = Framing.HEADER_SIZE + length
    if (length <= COPY_LIMIT) {
      room(total)
      Framing.writeHeader(batch, batchFill, kind, length)
      batch.set(payload, batchFill + Framing.HEADER_SIZE)
      batchFill += total
    } else {
      seal()
      const spare = reuse ? spares.take(total) : Buffer.allocUnsafeSlow(total)
      Framing.writeHeader(spare, 0, kind, length)
      spare.set(payload, Framing.HEADER_SIZE)
      out.push(spare.subarray(0, total))
      owners.push(reuse ? spare : undefined)
    }
    queued += total
  }

  // a data frame of `text`'s UTF-8 bytes: short text is encoded straight into the batch (at most 3 bytes
  // per UTF-16 unit), without a buffer of its own to copy from; its length is what was written
  const enqueueText = (text: string, max: number): number => {
    // every UTF-16 unit is at least one byte: text this long is too large without encoding it
    if (text.length > max) return Bytes.utf8Length(text)
    if (text.length * 3 > COPY_LIMIT) {
      const bytes = Bytes.utf8(text)
      if (bytes.byteLength <= max) enqueue(Framing.Kind.data, bytes)
      return bytes.byteLength
    }
    room(Framing.HEADER_SIZE + text.length * 3)
    const length = batch.write(text, batchFill + Framing.HEADER_SIZE)
    if (length > max) return length
    Framing.writeHeader(batch, batchFill, Framing.Kind.data, length)
    batchFill += Framing.HEADER_SIZE + length
    queued += Framing.HEADER_SIZE + length
    return length
  }

  /** Drops what is queued: it will never leave. */
  const drop = (): void => {
    out = []
    owners = []
    queued = 0
    batchStart = batchFill
  }

  // separate streams (pipes): the peer stopped reading (EPIPE) but what it wrote before it went is still
  // in our input, its goodbye perhaps among it: sends fail from now on, reading goes on to the input's end
  let writesLost = false
  const loseWrites = (cause: Error | null | undefined): void => {
    // (after `destroy`: the output's own close event, when the channel let go of it; a timer started then ran
    // for ever and held the process open)
    if (writesLost || destroyed) return
    writesLost = true
    drop()
    // no pong will leave now: reading goes on (it stopped for them)
    if (backedUp) readOn()
    if (ending) return goodbyeSaid()
    const error = lost(cause)
    sink.writesLost(error)
    watchQuiet(error)
  }
  // what the peer wrote before it stopped reading is in the pipe already: an input that then stays quiet
  // (not paused by our own reader) for the linger is not going to end by itself (a FIFO that never had a
  // writer, a child's stdout held open by a process it started), and the channel ends then
  let quietTimer: ReturnType<typeof setInterval> | undefined
  let chunksSeen = 0
  const watchQuiet = (error: IpcError.IpcError): void => {
    let seen = chunksSeen
    quietTimer = setInterval(() => {
      if (destroyed) {
        clearInterval(quietTimer)
        quietTimer = undefined
        return
      }
      if (chunksSeen !== seen || paused || backedUp) {
        seen = chunksSeen
        return
      }
      clearInterval(quietTimer)
      quietTimer = undefined
      if (peerSaidClose && !decoder.inFrame) {
        sink.peerClosed()
        sink.closed()
      } else {
        sink.lost(error)
      }
    }, quietMillis)
  }
  // our goodbye: said once it was written, or once nothing can be (the output went as it was written)
  let saidGoodbye: (() => void) | undefined
  const goodbyeSaid = (): void => {
    const said = saidGoodbye
    saidGoodbye = undefined
    if (said === undefined) return
    said()
    // separate streams too read on to the peer's answer (its goodbye, then its output's end), as a socket does:
    // what it still sends is dropped, not refused (EPIPE), and `closeChecked` hears the answer
    if (streams.awaitsAnswer === false || readable.readableEnded) sink.closed()
  }

  // a stream that has failed or gone takes writes without a word (Node reports it on a later tick, or, for
  // one that went before the channel had it, never): found at a flush, it fails the channel (a socket) or
  // its sends (separate streams: see `loseWrites`)
  const broken = (): boolean => {
    if (writesLost) {
      drop()
      return true
    }
    if (!writable.destroyed && writable.errored == null && !(writable.writableEnded && !ending)) return false
    if (!duplex) {
      loseWrites(writable.errored)
      return true
    }
    drop()
    if (peerSaidClose && !decoder.inFrame) sink.peerClosed()
    else sink.lost(lost(writable.errored))
    return true
  }

  const flush = (): void => {
    if (out.length === 0) {
      // the usual case, small messages only: the batch's new part is written as it is
      if (batchFill === batchStart || destroyed || broken()) return
      const chunk = batch.subarray(batchStart, batchFill)
      batchStart = batchFill
      queued = 0
      try {
        writable.write(chunk)
      } catch (cause) {
        return sink.lost(IpcError.fromSystemError(cause, "Write", "write failed", address))
      }
      return written()
    }
    seal()
    if (destroyed || broken()) return
    const chunks = out
    const chunkOwners = owners
    out = []
    owners = []
    queued = 0
    try {
      if (chunks.length === 1) {
        const owner = chunkOwners[0]
        writable.write(chunks[0], owner === undefined ? undefined : recycle(owner))
      } else {
        writable.cork()
        for (let i = 0; i < chunks.length; i++) {
          const owner = chunkOwners[i]
          writable.write(chunks[i], owner === undefined ? undefined : recycle(owner))
        }
        writable.uncork()
      }
    } catch (cause) {
      return sink.lost(IpcError.fromSystemError(cause, "Write", "write failed", address))
    }
    written()
  }
  // after a flush's writes
  const written = (): void => {
    // a write that failed at once (EPIPE) marked the stream errored, and its send is not on its way
    if (writable.errored != null) {
      broken()
      return
    }
    // a socket that took everything at once (the kernel copied it): the batch is written into again from
    // its start, so that small messages go on landing in memory already mapped (a fresh 64 KiB batch per
    // 64 KiB sent cost a page fault per 4 KiB message on a VM: 4 µs of a 40 µs round trip)
    if (writable.writableLength === 0) {
      pongBytes = 0
      if (reuse) {
        batchStart = 0
        batchFill = 0
      }
    } else if (pongBytes > highWaterMark && writable.writableLength > highWaterMark) {
      stopForPongs()
    }
  }

  // pongs answer what the peer sends, so a peer that sends pings and reads none of the answers would
  // pile them up here without limit (256 MiB of pings, 300 MiB more of this process's memory). Once
  // the pongs queued since the output was last empty pass the high-water mark, and the output too,
  // reading stops until the peer has read it all (the stream drains: more than the mark is more than
  // the stream's own, so its write said wait), as a socket's window stops a sender: every ping is
  // still answered, in turn. Only pongs count: a heartbeat's ping answered while our own messages
  // wait for a slow reader stops nothing (two peers that did so would wait for each other for good)
  let pongBytes = 0 // bytes of pongs queued since the output was last empty
  let backedUp = false // reading stopped: the peer reads none of our pongs
  const stopForPongs = (): void => {
    // after our goodbye the stream ends, and an ending stream sends no more drains: read on to the peer's end
    if (backedUp || destroyed || ending || writesLost) return
    backedUp = true
    readable.pause()
    if (frameTimer !== undefined) clearTimeout(frameTimer)
    frameTimer = undefined
  }
  const readOn = (): void => {
    backedUp = false
    if (paused || destroyed) return
    readable.resume()
    armFrameTimer()
  }
  const onDrain = (): void => {
    pongBytes = 0
    if (backedUp) readOn()
    sink.writable()
  }

  // ---- reading ------------------------------------------------------
  // a Node stream hands each chunk over (every read is a fresh buffer): a frame spread over chunks is
  // copied once, when complete
  const decoder = new Framing.Decoder(maxFrameSize, { chunksHandedOver: true })
  const onFrame: Framing.FrameHandler = (kind, payload) => {
    framesSeen++
    if (frameTimer !== undefined) {
      clearTimeout(frameTimer)
      frameTimer = undefined
    }
    switch (kind) {
      case Framing.Kind.data:
        if (!sink.message(payload)) {
          // our consumer is behind: the rest of a frame waits in the stream, and its time is not the peer's
          paused = true
          readable.pause()
        }
        break
      case Framing.Kind.close:
        // the goodbye counts once the stream ends: until then we may still answer what came before it
        peerSaidClose = true
        break
      case Framing.Kind.ping:
        if (!ending && !writesLost) {
          enqueue(Framing.Kind.pong, new Uint8Array(payload))
          pongBytes += Framing.HEADER_SIZE + payload.byteLength
          sink.flushSoon()
        }
        break
      case Framing.Kind.pong:
        break
    }
  }
  // a frame that has started must finish within frameTimeout (a 1-byte-per-second peer is dropped); the
  // clock runs only while we read: paused by back-pressure, the frame's rest may wait without limit, and
  // the peer gets a whole frameTimeout again once reading resumes
  let frameTimer: ReturnType<typeof setTimeout> | undefined
  let framesSeen = 0
  let paused = false
  const armFrameTimer = () => {
    if (paused || backedUp || destroyed || !decoder.inFrame || frameTimer !== undefined) return
    frameTimer = setTimeout(onFrameTimeout(framesSeen), frameTimeoutMillis)
    frameTimer.unref()
  }
  const onFrameTimeout = (frameAtStart: number) => () => {
    frameTimer = undefined
    if (decoder.inFrame && framesSeen === frameAtStart) {
      sink.lost(IpcError.make("Timeout", `a frame took longer than ${frameTimeoutMillis} ms to arrive`, address))
    }
  }
  const decode = (chunk: Buffer) => {
    sink.heard()
    const error = decoder.push(chunk, onFrame)
    if (error !== undefined) return sink.lost(new IpcError.IpcError({ ...error, address }))
    if (!decoder.inFrame) {
      if (frameTimer !== undefined) clearTimeout(frameTimer)
      frameTimer = undefined
    } else {
      armFrameTimer()
    }
  }
  // the receiver resumes as the chunk's last frame is decoded, inside this callback (a microtask later cost
  // 0.7 µs of a 36 µs round trip)
  const onData = (chunk: Buffer) => {
    chunksSeen++
    sink.deliver(() => decode(chunk))
  }
  // an input that ended badly waits to say how the process there ended: its stream's close says nothing more
  let awaitingExit = false
  const lostAtEnd = (what: string, cause?: Error): void => {
    const how = streams.peerExit?.()
    const peerExited = streams.peerExited
    if (how !== undefined || streams.peerExit === undefined || peerExited === undefined) {
      return sink.lost(endedBadly(what, how, address, cause))
    }
    // the process there is perhaps exiting (its output closes a moment before the kernel says how it ended): no
    // send is taken from now on, and the channel fails once it has exited, or after `EXIT_WAIT_MILLIS` without
    sink.writesLost(endedBadly(what, undefined, address, cause))
    let timer: ReturnType<typeof setTimeout> | undefined
    const report = (): void => {
      if (timer === undefined) return
      clearTimeout(timer)
      timer = undefined
      awaitingExit = false
      sink.lost(endedBadly(what, streams.peerExit?.(), address, cause))
    }
    awaitingExit = true
    timer = setTimeout(report, EXIT_WAIT_MILLIS)
    peerExited(report)
  }
  const onEnd = () => {
    endSeen = true
    if (decoder.inFrame) {
      lostAtEnd("the stream ended in the middle of a frame")
    } else if (peerSaidClose) {
      sink.peerClosed()
    } else if (!ending) {
      lostAtEnd("the peer ended the stream without closing the channel")
    } else if (streams.halfClose !== false) {
      // our goodbye went unanswered: the peer dropped the connection instead (what we sent may not have been read)
      lostAtEnd("the peer ended the stream without answering our goodbye")
    }
  }
  const onError = (cause: Error) => {
    // a reset by a process at the other end that is exiting: said as its end is, how it ended named (it said only
    // "read ECONNRESET" where the process had input it never read)
    if (streams.peerExit !== undefined && !endSeen && isPeerReset(cause)) {
      endSeen = true
      return lostAtEnd("the connection failed", cause)
    }
    sink.lost(IpcError.fromSystemError(ended(cause), "ConnectionLost", "the connection failed", address))
  }

  writable.on("drain", onDrain)
  readable.on("data", onData)
  readable.on("end", onEnd)
  readable.on("error", onError)
  readable.on("close", () => {
    if (!endSeen) onEnd()
    // (it said "the link closed without a goodbye" in its place, when the close came before the exit)
    if (!awaitingExit) sink.closed()
  })
  if (!duplex) {
    writable.on("error", loseWrites)
    writable.on("close", () => {
      if (!ending) loseWrites(writable.errored ?? readerGone)
    })
  }

  // streams that ended or failed before the channel took them send no more events: the channel fails now
  // (the input; a lost output only fails the sends, see `loseWrites`)
  if (readable.destroyed || readable.readableEnded) {
    sink.lost(
      readable.errored == null
        ? IpcError.make("ConnectionLost", "the peer had gone before the channel was made", address)
        : IpcError.fromSystemError(readable.errored, "ConnectionLost", "the connection failed", address)
    )
  } else if (writable.destroyed || writable.writableEnded) {
    if (duplex) sink.lost(lost(writable.errored))
    else loseWrites(writable.errored)
  }
  streams.peerExited?.(() => {
    if (!destroyed && !endSeen) loseWrites(peerGone)
  })

  return {
    write: (message) => enqueue(Framing.Kind.data, message),
    writeText: enqueueText,
    flush,
    pending: () => writesLost ? 0 : queued + writable.writableLength,
    resume: () => {
      if (destroyed) return
      paused = false
      // still waiting for the peer to read our pongs: reading goes on once it has
      if (!backedUp) readOn()
    },
    ping: () => enqueue(Framing.Kind.ping, EMPTY),
    goodbye: (sent) => {
      ending = true
      // no more pongs from here on: read on, to the peer's goodbye
      if (backedUp) readOn()
      if (writesLost) {
        // nobody reads our goodbye: said; the channel ends with the input
        sent()
        if (readable.readableEnded) sink.closed()
        return
      }
      saidGoodbye = sent
      enqueue(Framing.Kind.close, EMPTY)
      flush()
      // a socket waits (briefly: the engine's linger) for the peer's end, so nothing it still sends is reset
      writable.end(goodbyeSaid)
    },
    destroy: () => {
      destroyed = true
      readable.off("data", onData)
      if (frameTimer !== undefined) clearTimeout(frameTimer)
      if (quietTimer !== undefined) clearInterval(quietTimer)
      readable.destroy()
      if (!duplex) writable.destroy()
    }
  }
}

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
    // a frame's length is 32 bits: a larger limit (Infinity: none asked for) is the most a frame can say, where a
    // message past it was framed with its length modulo 2^32 and its tail read as frames of the sender's choice
    const maxFrameSize = Math.min(options.maxFrameSize ?? Framing.DEFAULT_MAX_FRAME_SIZE, Framing.MAX_FRAME_SIZE)
    // a longer timer would fire at once
    const frameTimeout = Math.min(
      Duration.toMillis(Duration.fromInputUnsafe(options.frameTimeout ?? "30 seconds")),
      MAX_TIMER_MILLIS
    )
    // how long an input may stay quiet once our output is lost (separate streams): the linger
    const quiet = Duration.toMillis(Duration.fromInputUnsafe(options.lingerTimeout ?? "2 seconds"))
    // at least the stream's own: a write past it says wait, and its drain follows
    const highWaterMark = Math.max(options.highWaterMark ?? 4 * 1024 * 1024, streams.writable.writableHighWaterMark)
    return ChannelEngine.make(
      {
        address,
        peer,
        maxMessageSize: maxFrameSize,
        highWaterMark,
        writeTimeout: options.writeTimeout,
        maxBufferedMessages: options.maxBufferedMessages,
        maxBufferedBytes: options.maxBufferedBytes,
        heartbeat: options.heartbeat,
        lingerTimeout: options.lingerTimeout
      },
      link(streams, {
        address,
        frameTimeoutMillis: frameTimeout,
        maxFrameSize,
        quietMillis: Math.min(Math.max(50, quiet), MAX_TIMER_MILLIS),
        highWaterMark
      })
    ).channel
  })

/** Like `make`, and closes the channel when the scope closes. */
export const makeScoped = (
  streams: StreamPair,
  address: string,
  peer?: IpcChannel.PeerInfo,
  options?: StreamChannelOptions
): Effect.Effect<IpcChannel.IpcChannel, never, Scope.Scope> =>
  Effect.acquireRelease(make(streams, address, peer, options), (channel) => channel.close)
