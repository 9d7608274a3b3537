/**
 * An `IpcChannel` over one connected nng pair socket (one per conversation;
 * see `NngTransport`). Each nng message's first byte is its kind:
 *
 * - `0` data: the rest is one message of the channel;
 * - `4` batch: several messages, each as a 4-byte big-endian length and its bytes
 *   (unpacked only as far as the inbox has room: the rest waits, as the batch's
 *   bytes, and no other nng message is taken until it is delivered);
 * - `1` close: the sender ends the conversation (answered with a close);
 * - `2` hello (client -> server, with the conversation's token) and `3` ready
 *   (server -> client): the handshake, before the channel exists.
 *
 * Sending is coalesced: a message goes to nng at once when nng can take it;
 * while nng's buffers are full, messages queue (up to `highWaterMark` bytes,
 * then `send` waits) and go out together, many small messages per nng message,
 * when nng is ready again.
 *
 * nng does not tell a graceful end from a lost peer, and its dialers
 * reconnect silently; so the channel sends a close to end, and a shared
 * timer checks that the pipe the handshake came through still exists: when it
 * is gone (the peer died or the link broke) the channel fails with
 * `ConnectionLost`, after delivering what had arrived. A message through any
 * other pipe (a reconnection, which may have lost messages) also ends the
 * channel with `ConnectionLost`: nothing is ever lost silently.
 *
 * @internal
 */
import * as ChannelEngine from "@effect-ipc/core/ChannelEngine"
import * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Nng from "./nng.ts"
import type * as Socket from "./socket.ts"
import * as Ticker from "./ticker.ts"

/** The kind byte of each nng message on a channel's socket. */
export const Kind = { data: 0, close: 1, hello: 2, ready: 3, batch: 4 } as const

/** A one-byte prefix per kind, shared (nng copies it into each message). */
export const prefix = {
  data: new Uint8Array([Kind.data]),
  close: new Uint8Array([Kind.close]),
  hello: new Uint8Array([Kind.hello]),
  ready: new Uint8Array([Kind.ready]),
  batch: new Uint8Array([Kind.batch])
} as const

const EMPTY = new Uint8Array(0)

/** Most nng messages taken per readiness event, so that one busy channel cannot starve the others. */
const BURST = 256
/** Largest batch of small messages sent as one nng message, in bytes (what a receiver must admit). */
export const BATCH_BYTES = 256 * 1024
/** Messages at least this large travel alone. */
const ALONE_BYTES = 64 * 1024

/**
 * A copy of `message` for the send queue; from 4 KiB on into memory that is
 * not zero-filled first (see `Nng.fresh`). Not `slice()`: a Node Buffer's
 * `slice` is a view of the caller's memory.
 */
const own = (nng: Nng.Nng, message: Uint8Array): Uint8Array => {
  if (message.byteLength < 4096) return new Uint8Array(message)
  const copy = nng.fresh(message.byteLength)
  copy.set(message)
  return copy
}

/** Options of a channel. */
export interface ChannelOptions {
  readonly address: string
  /** The pipe the handshake came through: the only one this channel accepts. */
  readonly pipe: number
  readonly peer: IpcChannel.PeerInfo
  readonly maxMessageSize: number
  /** Bytes queued (beyond what nng holds) above which `send` waits. */
  readonly highWaterMark: number
  /** How long a `send` may wait for the peer to read before the channel fails (`Timeout`); none by default. */
  readonly writeTimeout?: Duration.Input | undefined
  readonly maxBufferedMessages?: number | undefined
  readonly maxBufferedBytes?: number | undefined
  /** How long `close` waits for the peer to acknowledge, in ms. */
  readonly closeTimeout: number
}

/** Where batches are packed: nng copies each into a message of its own at once, so one serves every channel. */
const batchScratch = new Uint8Array(BATCH_BYTES)
const batchView = new DataView(batchScratch.buffer)

/** Packs `messages` into one batch body. */
const packBatch = (messages: ReadonlyArray<Uint8Array>, bytes: number): Uint8Array => {
  const out = batchScratch.subarray(0, bytes)
  const view = batchView
  let offset = 0
  for (const message of messages) {
    view.setUint32(offset, message.byteLength)
    out.set(message, offset + 4)
    offset += 4 + message.byteLength
  }
  return out
}

/**
 * Checks a batch body without unpacking it: `-1` when it is malformed, else
 * the size of its largest message.
 */
const checkBatch = (body: Uint8Array): number => {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
  let largest = 0
  let offset = 0
  while (offset < body.byteLength) {
    if (offset + 4 > body.byteLength) return -1
    const length = view.getUint32(offset)
    if (offset + 4 + length > body.byteLength) return -1
    if (length > largest) largest = length
    offset += 4 + length
  }
  return largest
}

/**
 * A received batch, unpacked one message at a time as the inbox has room:
 * what waits is the batch's own bytes, never tens of thousands of views.
 */
interface Unpacking {
  readonly body: Uint8Array
  readonly view: DataView
  offset: number
}

/**
 * Makes the channel; it owns `socket` and closes it when the conversation is
 * over. The lifecycle (checks, back-pressure, goodbye, failure) is core's
 * `ChannelEngine`; this is the link: nng messages, batches while nng is full,
 * and the pipe watch.
 */
export const make = (socket: Socket.Socket, options: ChannelOptions): IpcChannel.IpcChannel => {
  const { address, pipe } = options
  const engine = ChannelEngine.make({
    address,
    peer: options.peer,
    maxMessageSize: options.maxMessageSize,
    highWaterMark: options.highWaterMark,
    writeTimeout: options.writeTimeout,
    maxBufferedMessages: options.maxBufferedMessages,
    maxBufferedBytes: options.maxBufferedBytes,
    lingerTimeout: options.closeTimeout,
    // closing the socket drops what nng still holds for the peer
    unansweredIsLost: true
  }, (sink) => link(socket, pipe, address, options.maxMessageSize, sink))
  // closing also waits until nng has let the socket go
  return {
    ...engine.channel,
    close: IpcChannel.extendClose(engine.channel.close, (inner) => Effect.andThen(inner, socket.close))
  }
}

const link = (
  socket: Socket.Socket,
  pipe: number,
  address: string,
  maxMessageSize: number,
  sink: ChannelEngine.Sink
): ChannelEngine.Link => {
  let ending = false // our goodbye is queued
  let peerClosed = false // the peer's close arrived
  let acknowledged: (() => void) | undefined // our goodbye is out: waiting for the peer's close
  let destroyed = false
  let stopReading: (() => void) | undefined
  let stopWatching: (() => void) | undefined

  // ---- sending -------------------------------------------------------------
  // What waits for nng: a small message as a copy (sent together, many per nng message), a large one
  // (from ALONE_BYTES) as the nng message it goes as, built once. (Built again at every try, a
  // 1 MiB message was copied three times, each into fresh memory, by a sender that nng held back.)
  const queue: Array<Uint8Array | Nng.Built> = []
  let queued = 0
  let closeQueued = false // a close goes out after everything queued
  let closeSent: (() => void) | undefined // called once the close went out
  let stopWritable: (() => void) | undefined

  /** Hands queued messages to nng (batched) until it is full, then the close if one is due. */
  const pump = (): void => {
    let progress = false
    while (queue.length > 0) {
      const head = queue[0]!
      let count = 1
      let rv: number
      if (head instanceof Nng.Built) {
        rv = socket.trySendBuilt(head)
      } else {
        // the copies below ALONE_BYTES go together (whatever is larger is a built message)
        let bytes = 4 + head.byteLength
        while (
          count < queue.length && queue[count]!.byteLength < ALONE_BYTES &&
          bytes + 4 + queue[count]!.byteLength <= BATCH_BYTES
        ) {
          bytes += 4 + queue[count]!.byteLength
          count++
        }
        rv = count === 1
          ? socket.trySend(head, prefix.data)
          : socket.trySend(packBatch(queue.slice(0, count) as Array<Uint8Array>, bytes), prefix.batch)
      }
      if (rv === Nng.EAGAIN) break
      if (rv !== 0) return lose(socket.error(rv, "cannot send"))
      for (let i = 0; i < count; i++) queued -= queue[i]!.byteLength
      queue.splice(0, count)
      progress = true
    }
    if (progress) sink.writable()
    if (queue.length > 0) return watchWritable()
    if (closeQueued && closeSent !== undefined) {
      const rv = socket.trySend(EMPTY, prefix.close)
      if (rv === Nng.EAGAIN) return watchWritable()
      const sent = closeSent
      closeSent = undefined
      sent()
    }
    stopWritable?.()
    stopWritable = undefined
  }

  const watchWritable = () => {
    if (stopWritable === undefined && !socket.isClosed()) stopWritable = socket.onWritable(pump)
  }

  // ---- receiving -----------------------------------------------------------
  // the rest of a batch the inbox had no room for: no more nng message is taken until it is delivered
  let unpacking: Unpacking | undefined

  /** Starts unpacking a (checked) batch body. */
  const startBatch = (body: Uint8Array) => {
    if (body.byteLength > 0) {
      unpacking = { body, view: new DataView(body.buffer, body.byteOffset, body.byteLength), offset: 0 }
    }
  }

  /** The next message of the batch being unpacked. */
  const nextOfBatch = (batch: Unpacking): Uint8Array => {
    const length = batch.view.getUint32(batch.offset)
    const message = batch.body.subarray(batch.offset + 4, batch.offset + 4 + length)
    batch.offset += 4 + length
    if (batch.offset >= batch.body.byteLength) unpacking = undefined
    return message
  }

  /** Delivers the rest of the batch being unpacked, past the inbox's bound (the connection is over). */
  const unpackAll = () => {
    while (unpacking !== undefined) sink.message(nextOfBatch(unpacking))
  }

  /**
   * Delivers the batch being unpacked up to its first message over our limit, past the inbox's bound (the link
   * ends there), nothing from it on.
   */
  const unpackWithinLimit = () => {
    while (unpacking !== undefined && unpacking.view.getUint32(unpacking.offset) <= maxMessageSize) {
      sink.message(nextOfBatch(unpacking))
    }
    unpacking = undefined
  }

  /** Delivers the rest of the batch being unpacked while the inbox has room; `false` once it is full. */
  const unpack = (): boolean => {
    while (unpacking !== undefined) {
      if (!sink.message(nextOfBatch(unpacking))) return false
    }
    return true
  }

  /**
   * The connection is over: deliver what nng had received, then the error
   * (unless the conversation had ended). When the peer's pipe is gone and its
   * close is among what nng held, the peer ended gracefully: it said
   * everything and left before we read it (its `closeTimeout` ran out), so
   * the end is a close, not a loss.
   */
  const lose = (error: IpcError.IpcError, pipeGone = false) => {
    if (destroyed) return
    if (!ending && !peerClosed) {
      // the rest of the batch first: it came before anything nng still holds
      unpackAll()
      for (let message = socket.tryReceive(); typeof message !== "number"; message = socket.tryReceive()) {
        if (message.pipe !== pipe) break
        // held to our limit and checked as `onMessage` does them (a message over it was delivered here, the
        // connection being over)
        if (message.kind === Kind.data) {
          if (message.body.byteLength > maxMessageSize) return void tooLarge(message.body.byteLength)
          sink.message(message.body)
        } else if (message.kind === Kind.batch) {
          const largest = checkBatch(message.body)
          if (largest < 0) return sink.lost(IpcError.make("Protocol", "a malformed batch arrived", address))
          startBatch(message.body)
          if (largest > maxMessageSize) {
            unpackWithinLimit()
            return void tooLarge(largest)
          }
          unpackAll()
        } else if (message.kind === Kind.close && pipeGone) {
          peerClosed = true
          sink.peerClosed()
          return sink.closed()
        }
      }
    }
    unpacking = undefined
    sink.lost(error)
  }

  /** The peer sent a message over our limit: the link fails there (what came before it was delivered, nothing after). */
  const tooLarge = (size: number): false => {
    if (!destroyed) sink.lost(IpcError.frameTooLarge(size, maxMessageSize, address))
    return false
  }

  const onMessage = (message: Nng.Received): boolean => {
    if (message.pipe !== pipe) {
      lose(IpcError.make("ConnectionLost", "the link was re-established: messages may have been lost", address))
      return false
    }
    switch (message.kind) {
      case Kind.data:
        // after our close, data is dropped while we wait for the peer's close
        if (ending || peerClosed) return true
        // nng's own limit admits a whole batch: a single message is held to ours here
        if (message.body.byteLength > maxMessageSize) return tooLarge(message.body.byteLength)
        return sink.message(message.body)
      case Kind.batch: {
        if (ending || peerClosed) return true
        const largest = checkBatch(message.body)
        if (largest < 0) {
          lose(IpcError.make("Protocol", "a malformed batch arrived", address))
          return false
        }
        if (largest > maxMessageSize) {
          startBatch(message.body)
          unpackWithinLimit()
          return tooLarge(largest)
        }
        // unpacked as far as the inbox has room: the rest waits for `resume`
        startBatch(message.body)
        return unpack()
      }
      case Kind.close:
        if (!peerClosed) {
          peerClosed = true
          // the engine ends the input and answers (after anything still queued), unless we closed first
          sink.peerClosed()
          const ack = acknowledged
          acknowledged = undefined
          ack?.()
        }
        return !ending
      default:
        return true // hello and ready belong to the handshake
    }
  }

  /** Takes up to `most` of nng's messages; true when it took them all and reading goes on. */
  const take = (most: number): boolean => {
    for (let i = 0; i < most; i++) {
      const message = socket.tryReceive()
      if (typeof message === "number") return false
      if (!onMessage(message)) {
        // the inbox is full (or the channel is over): wait for `resume`
        stopReading?.()
        stopReading = undefined
        return false
      }
    }
    return true
  }
  /** The first message of a readiness event (after the rest of a batch); true when reading goes on. */
  const takeFirst = (): boolean => {
    if (!unpack()) {
      stopReading?.()
      stopReading = undefined
      return false
    }
    return take(1)
  }
  const takeRest = () => void take(BURST - 1)

  // A waiting receiver resumes with the first message, inside the poll's callback, before nng is asked
  // for more: a round trip's answer is not held behind the `nng_recvmsg` that finds nothing (about
  // 1 µs). The rest of the burst (read unless the receiver paused or ended reading as it ran) resumes it
  // once more, as the drain ends (nng had nothing more, a burst was read or the inbox is full).
  const drain = () => {
    if (sink.deliver(takeFirst) && stopReading !== undefined && !destroyed) sink.deliver(takeRest)
  }

  /** Reads on: first the rest of a batch (dropped after our close, as data is), then nng's messages. */
  const startReading = () => {
    if (destroyed || socket.isClosed()) return
    if (unpacking !== undefined) {
      if (ending || peerClosed) unpacking = undefined
      else if (!unpack()) return
    }
    if (stopReading !== undefined) return
    stopReading = socket.onReadable(drain)
  }

  startReading()
  stopWatching = Ticker.every(() => {
    if (socket.nng.pipeAlive(pipe)) return
    // the peer closes on receipt of our answer: its pipe going is the end of a graceful close
    if (peerClosed) sink.closed()
    else lose(IpcError.make("ConnectionLost", "the peer is gone (the process ended or the link broke)", address), true)
  })

  return {
    write: (message) => {
      if (message.byteLength >= ALONE_BYTES) {
        const sent = socket.sendOrBuild(message, prefix.data, queue.length === 0)
        if (sent === 0) return
        if (typeof sent === "number") return Effect.fail(socket.error(sent, "cannot send"))
        queue.push(sent)
      } else {
        if (queue.length === 0) {
          const rv = socket.trySend(message, prefix.data)
          if (rv === 0) return
          if (rv !== Nng.EAGAIN) return Effect.fail(socket.error(rv, "cannot send"))
        }
        // nng is full: queue a copy (the caller may reuse its buffer once `send` returns)
        queue.push(own(socket.nng, message))
      }
      queued += message.byteLength
      watchWritable()
    },
    pending: () => queued,
    resume: startReading,
    goodbye: (sent) => {
      ending = true
      if (peerClosed) {
        // our answer: once it is out, the peer closes its socket on receipt (the pipe watch sees it go)
        closeSent = sent
      } else {
        // say goodbye after what is queued, and wait for the peer's close: what we sent is read first
        closeSent = () => {}
        acknowledged = () => {
          sent()
          sink.closed()
        }
        startReading()
      }
      closeQueued = true
      pump()
    },
    destroy: () => {
      destroyed = true
      unpacking = undefined
      // the messages built for nng that it never took are ours to free
      for (const entry of queue.splice(0)) if (entry instanceof Nng.Built) socket.nng.dropBuilt(entry)
      queued = 0
      stopReading?.()
      stopReading = undefined
      stopWritable?.()
      stopWritable = undefined
      stopWatching?.()
      stopWatching = undefined
      socket.shutdown()
    }
  }
}
