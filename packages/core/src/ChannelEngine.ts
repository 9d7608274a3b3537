/**
 * The channel engine: the one implementation of an `IpcChannel`'s contract,
 * which every transport runs on. A transport supplies a `Link` (a few
 * synchronous operations on its medium: queue a message, flush the burst,
 * say how much is still queued, resume reading, ping, say goodbye, destroy);
 * the engine owns everything else, the way nng's core owns a pipe's life
 * while a transport supplies send, receive, close and stop:
 *
 * - the lifecycle: open, closing (we said goodbye), peer closed (it said
 *   goodbye), failed, finished; the `closed` signal completes once, at the end;
 * - the inbox, and pausing the link while it is full;
 * - send checks (closed, failed, `FrameTooLarge`), in that order;
 * - send back-pressure: `send` waits while the link holds more than
 *   `highWaterMark` bytes, and drops the peer after `writeTimeout`;
 * - writes go out at once and in bursts: the first message sent in a turn of
 *   the event loop is flushed as `send` returns (a reply leaves before the
 *   sender's other work runs); the rest of that turn's messages go to the
 *   link's `flush` together, in a microtask, and a long burst every
 *   `maxBurstDelay` as well (the peer starts on it while the rest is made);
 * - graceful close: the goodbye goes out after everything queued, `close`
 *   waits for it up to `lingerTimeout`, the link is destroyed once the peer
 *   is gone too (or after another `lingerTimeout`); a `close` that gave up
 *   with messages still queued logs a warning saying how many bytes never
 *   left (the peer sees `ConnectionLost`);
 * - heartbeats: pings while nothing was sent, `Timeout` after a silent peer;
 * - pending senders fail (with the failure, or `Closed`) as soon as the
 *   channel fails or closes; what had arrived is still delivered before a
 *   failure.
 *
 * The engine runs no fiber: timers are plain, cleared when the channel ends.
 *
 * @since 0.1.0
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Latch from "effect/Latch"
import * as Inbox from "./Inbox.ts"
import * as Bytes from "./internal/bytes.ts"
import * as Eager from "./internal/eager.ts"
import { MAX_TIMER_MILLIS } from "./internal/timer.ts"
import * as IpcChannel from "./IpcChannel.ts"
import * as IpcError from "./IpcError.ts"

/** Heartbeat settings: ping when idle, drop the peer when nothing arrives for `timeout`. */
export interface Heartbeat {
  /** How often to check, and to ping when nothing was sent. */
  readonly interval: Duration.Input
  /** Silence from the peer after which the channel fails with reason `Timeout`. */
  readonly timeout: Duration.Input
}

/**
 * What the engine offers a link: where incoming messages and the link's
 * events go. Every method may be called at any time, also after the end
 * (late calls are ignored).
 */
export interface Sink {
  /** Delivers one received message; `false` means: stop reading until `Link.resume`. */
  readonly message: (message: Uint8Array) => boolean
  /**
   * Runs `deliver`, which calls `message`, and resumes a waiting receiver as
   * it returns: wrap a read's whole delivery in it. Without it the receiver
   * resumes in a microtask after the first message.
   */
  readonly deliver: <A>(deliver: () => A) => A
  /** The peer showed a sign of life (any bytes, a pong): resets the heartbeat's silence. */
  readonly heard: () => void
  /** The link holds less now (the medium drained): waiting senders may go on. */
  readonly writable: () => void
  /**
   * `wait` (a write's wait for the peer to take its message, which a link returns from `write`)
   * under the channel's `writeTimeout`, as a wait for room is: past it the channel fails with `Timeout`.
   */
  readonly peerTakes: (wait: Effect.Effect<void, IpcError.IpcError>) => Effect.Effect<void, IpcError.IpcError>
  /** The link queued something itself (a pong) and wants a `flush` at the end of this burst. */
  readonly flushSoon: () => void
  /** The peer's goodbye arrived after all its messages: input ends gracefully, and the engine answers. */
  readonly peerClosed: () => void
  /** The link is broken (`error` says why): the channel fails after delivering what had arrived. */
  readonly lost: (error: IpcError.IpcError) => void
  /**
   * The link can no longer send (the peer stopped reading) but may still
   * deliver what the peer sent: sends fail with `error` (after the peer's
   * goodbye, with `Closed`), receiving goes on until the link ends.
   */
  readonly writesLost: (error: IpcError.IpcError) => void
  /** The link is down after the goodbyes (nothing more will come): the channel finishes. */
  readonly closed: () => void
  /** Fails once sends must stop (the channel failed or closed): for a link whose `write` is an Effect. */
  readonly aborted: Effect.Effect<never, IpcError.IpcError>
  /** True once the channel is closing, failed or finished: nothing new should be started. */
  readonly isEnding: () => boolean
}

/**
 * A transport's part of a channel: synchronous operations on its medium.
 * `write` gets each message as `send` is called (copy what the caller may
 * reuse); `flush` (if present) runs after the first message of a burst, every
 * `maxBurstDelay` during a long one, and once more at its end, in a microtask.
 */
export interface Link {
  /**
   * Queues (or writes) one message. A medium that writes asynchronously
   * (an append to a file) returns an Effect that completes once the message
   * is written; `send` waits for it, and it should fail with `Sink.aborted`.
   */
  readonly write: (message: Uint8Array) => void | Effect.Effect<void, IpcError.IpcError>
  /**
   * Queues the UTF-8 bytes of `text` as one message, encoded straight into
   * the queue, and returns their length; more than `max` bytes are not
   * queued. Optional: without it, text is sent as `write` of its bytes.
   */
  readonly writeText?: ((text: string, max: number) => number) | undefined
  /** Writes out everything queued since the last flush (one syscall where the medium allows). */
  readonly flush?: (() => void) | undefined
  /** Bytes written to the link that the medium has not taken yet (compared with `highWaterMark`). */
  readonly pending: () => number
  /** The inbox has room again: read on (after `Sink.message` answered `false`). */
  readonly resume: () => void
  /** Queues a ping (heartbeats); its answer reaches `Sink.heard`. */
  readonly ping?: (() => void) | undefined
  /** Queues our goodbye after everything queued; calls `sent` once it has left (`Sink.closed` when all is over). */
  readonly goodbye: (sent: () => void) => void
  /** Lets go of the medium at once (called exactly once, at the end). */
  readonly destroy: () => void
}

/** Options of a channel engine. */
export interface EngineOptions {
  /** The address the channel was dialled at or accepted on. */
  readonly address: string
  /** What is known of the peer process. */
  readonly peer?: IpcChannel.PeerInfo | undefined
  /** Largest message `send` accepts (default 256 MiB). */
  readonly maxMessageSize?: number | undefined
  /** Bytes the link may hold (see `Link.pending`) before `send` waits (default 4 MiB). */
  readonly highWaterMark?: number | undefined
  /** How long a `send` may wait for the peer to read before the peer is dropped (default: no limit). */
  readonly writeTimeout?: Duration.Input | undefined
  /** Incoming messages buffered before the link is paused (default 4096). */
  readonly maxBufferedMessages?: number | undefined
  /** Incoming bytes buffered before the link is paused (default 8 MiB). */
  readonly maxBufferedBytes?: number | undefined
  /** Heartbeats (off by default); the link must implement `ping`. */
  readonly heartbeat?: Heartbeat | undefined
  /** How long `close` waits for the goodbye to leave, and then for the peer's (default 2 s). */
  readonly lingerTimeout?: Duration.Input | undefined
  /**
   * The medium drops what the peer has not read as the channel closes (nng's queues): a peer that has not
   * answered the goodbye when the linger runs out lost it (`IpcChannel.closeChecked` fails), where over a
   * socket it may still read what the OS holds.
   */
  readonly unansweredIsLost?: boolean | undefined
  /** How long the messages of a long burst of sends wait before they are written out (default 200 µs). */
  readonly maxBurstDelay?: Duration.Input | undefined
}

/** A running engine: the channel, and its parts for transports that build on them. */
export interface Engine {
  /** The channel users see. */
  readonly channel: IpcChannel.IpcChannel
  /** The inbox, for a transport that decorates receiving. */
  readonly inbox: Inbox.Inbox
  /** Fails the channel with `error` (as `Sink.lost`). */
  readonly fail: (error: IpcError.IpcError) => void
}

const DEFAULT_MAX_MESSAGE_SIZE = 256 * 1024 * 1024
/** Sends of a burst between two looks at the clock, at first and at most (see `sent`). */
const CLOCK_STRIDE_START = 8
const CLOCK_STRIDE_MAX = 16
/** Messages of a `sendAll` written between two yields to the event loop. */
const BATCH_STEP = 2048
/** Lets the process exit while `timer` waits (Node); a browser's timers are plain numbers, with nothing to do. */
const unref = (timer: unknown): void => {
  if (typeof timer === "object" && timer !== null && "unref" in timer && typeof timer.unref === "function") {
    timer.unref()
  }
}
const millis = (input: Duration.Input): number => Duration.toMillis(Duration.fromInputUnsafe(input))

/**
 * What a caller handed `send` (JavaScript, or a cast, can pass anything) as
 * the bytes it holds: another view (a `DataView`, a `Uint16Array`) as a
 * `Uint8Array` over its bytes (copied element by element, a `Uint16Array`
 * once sent half its bytes and then memory never written); a view whose
 * memory was transferred away, or what is not a view at all, is `Encode`.
 */
export const asBytes = (given: unknown, where: string): Uint8Array | IpcError.IpcError => {
  // the usual case, at the cost of one check (an empty one may be a detached view: looked at below)
  if (given instanceof Uint8Array && given.byteLength > 0) return given
  if (ArrayBuffer.isView(given)) {
    try {
      if (Reflect.get(given.buffer, "detached") !== true) {
        return new Uint8Array(given.buffer, given.byteOffset, given.byteLength)
      }
    } catch {
      // a view of a detached buffer, where there is no `detached` to ask (Node 20)
    }
    return IpcError.make("Encode", "the message's memory was transferred away (its ArrayBuffer is detached)", where)
  }
  const what = given === null || given === undefined
    ? String(given)
    : typeof given === "object"
    ? "an object that is not a byte view"
    : `a ${typeof given}`
  return IpcError.make("Encode", `send takes a Uint8Array (got ${what})`, where)
}

/**
 * Runs a channel over the link that `open` starts. `open` gets the sink at
 * once and may deliver to it before it returns. Not scoped: the caller
 * closes the channel.
 */
export const make = (options: EngineOptions, open: (sink: Sink) => Link): Engine => {
  const address = options.address
  const maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE
  const highWaterMark = options.highWaterMark ?? 4 * 1024 * 1024
  const writeTimeout = options.writeTimeout
  // a linger longer than a timer can wait is no limit (a timer of it would fire at once)
  const lingerMillis = millis(options.lingerTimeout ?? "2 seconds")
  const linger = lingerMillis > MAX_TIMER_MILLIS ? Infinity : lingerMillis
  const maxBurstDelay = millis(options.maxBurstDelay ?? "200 micros")
  const closedErr = IpcError.make("Closed", "the channel is closed", address)
  const peerClosedErr = IpcError.closedByPeer(address)

  let failure: IpcError.IpcError | undefined
  let closing = false // our goodbye is queued (we closed, or answered the peer's)
  // our `close` has begun: what the link hands over from here (the peer's goodbye too) meets a close of ours
  let closeBegun = false
  let peerClosed = false
  let peerFirst = false // the peer said goodbye before we did (sends fail as closed by the peer)
  // none of the above (nor a failure, nor `sendLoss`) yet: `send`'s first check, one load where `sendError` is five
  let sendsOpen = true
  let finished = false
  let flushScheduled = false
  let heard = 0
  let flushes = 0
  let heartbeatTimer: ReturnType<typeof setInterval> | undefined
  let lingerTimer: ReturnType<typeof setTimeout> | undefined
  // bytes still queued when `close` gave up on its goodbye (cleared once reported, as a warning)
  let abandoned: number | undefined
  // how the channel ended after our goodbye, if not well (kept for `IpcChannel.closeChecked`; sends and receives
  // already end as closed then)
  let endedBadly: IpcError.IpcError | undefined
  const unanswered = (): IpcError.IpcError =>
    IpcError.make(
      "ConnectionLost",
      `the peer did not answer the goodbye within ${linger} ms: what it had not read is dropped as the channel closes`,
      address
    )
  /** What a close that gave up on its goodbye says (the warning and `closeChecked`'s error alike). */
  const gaveUp = (bytes: number): string =>
    `close gave up after ${linger} ms: ${bytes} bytes sent before it never left (the peer did not read)`
  const closed = Deferred.makeUnsafe<void>()
  // completes once our goodbye has left (or could not): what `close` waits for
  const said = Deferred.makeUnsafe<void>()
  // fails once sends must stop; made on first use (only links whose writes are Effects use it)
  let abort: Deferred.Deferred<never, IpcError.IpcError> | undefined
  const writableLatch = Latch.makeUnsafe(true)
  // set once `open` returns (a link that fails inside `open` is destroyed as it returns)
  let link: Link | undefined

  const inbox = Inbox.make({
    address,
    maxMessages: options.maxBufferedMessages,
    maxBytes: options.maxBufferedBytes,
    onResume: () => {
      if (!finished) link?.resume()
    }
  })

  // the link can no longer send, though it may still deliver (`Sink.writesLost`)
  let sendLoss: IpcError.IpcError | undefined

  const sendError = (): IpcError.IpcError | undefined =>
    failure ?? (peerFirst ? peerClosedErr : sendLoss ?? (closing || closeBegun ? closedErr : undefined))

  // ---- lifecycle ----------------------------------------------------------
  const finish = (): void => {
    if (finished) return
    finished = true
    if (heartbeatTimer !== undefined) clearInterval(heartbeatTimer)
    if (lingerTimer !== undefined) clearTimeout(lingerTimer)
    // the medium goes first: whoever wakes up below sees a channel that has let go of it
    link?.destroy()
    // a failure keeps what had arrived for the reader; a close drops what nobody read
    if (failure !== undefined) inbox.fail(failure)
    else if (!inbox.isDone()) inbox.shutdown(closedErr)
    Latch.openUnsafe(writableLatch)
    if (abort !== undefined) Deferred.doneUnsafe(abort, Effect.fail(failure ?? closedErr))
    Deferred.doneUnsafe(said, Effect.void)
    Deferred.doneUnsafe(closed, Effect.void)
  }

  const fail = (error: IpcError.IpcError): void => {
    if (failure !== undefined || finished) return
    if (closing) endedBadly ??= error
    else failure = error
    sendsOpen = false
    finish()
  }

  const abortSenders = (): void => {
    Latch.openUnsafe(writableLatch)
    if (abort !== undefined) Deferred.doneUnsafe(abort, Effect.fail(sendError() ?? closedErr))
  }

  /** Queues our goodbye (once); `said` completes once it left, the link goes once the peer is gone too. */
  const sayGoodbye = (): void => {
    if (closing || finished) return
    closing = true
    sendsOpen = false
    abortSenders()
    // an infinite linger waits for the peer as long as it takes (no timer: Node fires one of Infinity at once)
    if (linger !== Infinity) {
      lingerTimer = setTimeout(() => {
        // the goodbye never left: what is still queued is dropped with the link, and the peer sees ConnectionLost
        if (!finished && failure === undefined) {
          abandoned = link?.pending() ?? 0
          endedBadly ??= abandoned > 0
            ? IpcError.make("ConnectionLost", gaveUp(abandoned), address)
            : options.unansweredIsLost === true && !peerClosed
            ? unanswered()
            : undefined
        }
        finish()
      }, linger)
    }
    link!.goodbye(() => {
      Deferred.doneUnsafe(said, Effect.void)
      if (finished) return
      // the goodbye left: now wait (briefly, without holding the process) for the peer's end
      clearTimeout(lingerTimer)
      // an infinite linger still lets go of a peer that never ends its side (the longest a timer waits)
      lingerTimer = setTimeout(() => {
        if (!finished && !peerClosed && options.unansweredIsLost === true) endedBadly ??= unanswered()
        finish()
      }, Math.min(linger, MAX_TIMER_MILLIS))
      unref(lingerTimer)
    })
  }

  /** Says once, after a `close` that gave up on its goodbye, what the peer did not get. */
  const reportAbandoned = Effect.suspend(() => {
    const bytes = abandoned
    abandoned = undefined
    // nothing left queued: the goodbye is with the medium (it may yet arrive), or was never owed
    if (bytes === undefined || bytes === 0) return Effect.void
    return Effect.logWarning(
      `${gaveUp(bytes)}; they are dropped, and the peer sees ConnectionLost, not a close`
    ).pipe(Effect.annotateLogs({ address }))
  })

  const startClose = (): void => {
    if (!closing && !finished) {
      // begun first: shutting the inbox down resumes a paused link, which may hand over the peer's goodbye inside
      // it (in-memory: a sender of the peer's that waited on our inbox goes on, and closes): that meets our close,
      // it does not start one (sends say the channel is closed, not closed by its peer)
      closeBegun = true
      sendsOpen = false
      // wakes waiting receivers at once: one that closes on its way out has said goodbye by the time this returns
      inbox.shutdown(closedErr)
      // queued inside the shutdown already, or the link ended there
      sayGoodbye()
    } else if (!inbox.isDone()) {
      inbox.shutdown(closedErr)
    }
  }

  // for `IpcChannel.closeChecked`: `close` without the warning, and the channel's end, failing as the warning would
  // say, or with the channel's failure
  const checkedClose: IpcChannel.CheckedClose = {
    quiet: Effect.suspend(() => {
      startClose()
      return Deferred.await(said)
    }),
    outcome: Effect.andThen(
      Deferred.await(closed),
      Effect.suspend(() => {
        // the error says it: no warning from a later `close`
        abandoned = undefined
        const error = failure ?? endedBadly
        return error === undefined ? Effect.void : Effect.fail(error)
      })
    )
  }
  // `close`: the quiet close, then the warning when it gave up
  const close: Effect.Effect<void> = Effect.andThen(checkedClose.quiet, reportAbandoned)

  // ---- sending ------------------------------------------------------------
  /** Writes out what the link holds now. */
  const flushNow = (): void => {
    flushes++
    link!.flush!()
  }
  const flush = (): void => {
    flushScheduled = false
    if (finished) return
    flushNow()
    if (link!.pending() <= highWaterMark) Latch.openUnsafe(writableLatch)
  }
  const flushSoon = (): void => {
    if (!flushScheduled && link?.flush !== undefined) {
      flushScheduled = true
      queueMicrotask(flush)
    }
  }
  // the first send of a turn writes at once (a reply leaves before the rest of the sender's work runs), and
  // then schedules the burst's flush (after the write, so that it runs while the peer is at work on the
  // message): whatever else that turn sends goes out together, in the microtask. A long burst (a client
  // answering 64 replies with 64 calls) is written out every `maxBurstDelay` as well, so that the peer
  // works on its start while the rest is made; that costs at most one more write per `maxBurstDelay`.
  // The clock is looked at every `stride` sends of a burst, from the 8th on (a short burst reads none), a
  // large message counting as several (one more per 16 KiB). The stride follows the burst's pace: it
  // doubles (up to 16) while `stride` sends take under a quarter of `maxBurstDelay`, and halves (down to 1)
  // while they take over half of it, so a burst of a steady pace is looked at about every `maxBurstDelay` / 2,
  // and a fast one reads the clock every 16 sends, not every 8 (a read cost a quarter of a send). A fast
  // burst that turns slow is looked at within 16 sends (64 let the start of a burst wait 64 slow sends)
  let stride = CLOCK_STRIDE_START
  let clockDue = stride
  let burstClock = 0
  let lastLook = 0
  const sent = (atOnce: boolean, bytes: number): void => {
    if (link!.flush === undefined) return
    if (!flushScheduled) {
      stride = CLOCK_STRIDE_START
      clockDue = stride
      burstClock = 0
      if (atOnce) flushNow()
      flushSoon()
      return
    }
    if ((clockDue -= 1 + (bytes >>> 14)) > 0) return
    const now = performance.now()
    if (burstClock === 0) {
      burstClock = now
    } else {
      const took = now - lastLook
      if (took < maxBurstDelay / 4) {
        if (stride < CLOCK_STRIDE_MAX) stride *= 2
      } else if (took > maxBurstDelay / 2 && stride > 1) {
        stride /= 2
      }
      if (now - burstClock >= maxBurstDelay) {
        burstClock = now
        flushNow()
      }
    }
    lastLook = now
    clockDue = stride
  }

  const afterWait = Effect.suspend(() => {
    const error = sendError()
    return error === undefined ? Effect.void : Effect.fail(error)
  })
  // a wait for the peer (for room, or for it to take a message) past `writeTimeout` fails the channel
  const withinWriteTimeout = <E>(wait: Effect.Effect<void, E>): Effect.Effect<void, E | IpcError.IpcError> =>
    writeTimeout === undefined ? wait : Effect.timeoutOrElse(wait, {
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
    })
  const waitWritable: Effect.Effect<void, IpcError.IpcError> = Effect.flatMap(
    withinWriteTimeout(writableLatch.await),
    () => afterWait
  )

  // a write that fails because the channel failed meanwhile (its medium let go as the peer was lost) fails
  // with what the channel failed with, not with what the medium said as it was let go of
  const reported = (written: Effect.Effect<void, IpcError.IpcError>): Effect.Effect<void, IpcError.IpcError> =>
    Effect.mapError(written, (error) => failure ?? error)

  const sendNow = (given: Uint8Array): Effect.Effect<void, IpcError.IpcError> => {
    if (!sendsOpen) return Effect.fail(sendError() ?? closedErr)
    // the usual case at the cost of one check; anything else is looked at by `asBytes`
    const message = given instanceof Uint8Array && given.byteLength > 0 ? given : asBytes(given, address)
    if (!(message instanceof Uint8Array)) return Effect.fail(message)
    if (message.byteLength > maxMessageSize) {
      return Effect.fail(IpcError.frameTooLarge(message.byteLength, maxMessageSize, address))
    }
    const written = link!.write(message)
    if (written !== undefined) return reported(written)
    return queued(message.byteLength)
  }
  // what is left of a send whose message the link has queued
  const queued = (bytes: number): Effect.Effect<void, IpcError.IpcError> => {
    sent(true, bytes)
    // a link that failed as it wrote (or found the peer gone) has ended sending: this message is not on its way
    if (finished || sendLoss !== undefined || peerFirst) return afterWait
    if (link!.pending() <= highWaterMark) return Effect.void
    Latch.closeUnsafe(writableLatch)
    return waitWritable
  }
  // text (an RPC serialization's JSON) encoded by the link where it queues, not into a buffer of its own first
  const sendTextNow = (text: string): Effect.Effect<void, IpcError.IpcError> => {
    const writeText = link!.writeText
    if (writeText === undefined) return sendNow(Bytes.utf8(text))
    if (!sendsOpen) return Effect.fail(sendError() ?? closedErr)
    const length = writeText(text, maxMessageSize)
    if (length > maxMessageSize) return Effect.fail(IpcError.frameTooLarge(length, maxMessageSize, address))
    return queued(length)
  }
  const send = Eager.register((message) => Effect.suspend(() => sendNow(message)), sendNow, sendTextNow)

  // as `send` one by one, without an effect per message: the link takes each message at once while it
  // has room; a write that completes later, or a full link, is waited for before the rest. A batch that
  // starts a turn's burst is written out as it ends (or stops), not after its first message. A long batch
  // lets the event loop run every `BATCH_STEP` messages, as effect's fibers do every so many steps
  const sendAllFrom = (messages: ReadonlyArray<Uint8Array>, from: number): Effect.Effect<void, IpcError.IpcError> => {
    let starts = false
    const writeOut = (): void => {
      if (starts && !finished) flushNow()
    }
    for (let i = from; i < messages.length; i++) {
      if (i - from === BATCH_STEP) {
        writeOut()
        return Effect.andThen(Effect.yieldNow, Effect.suspend(() => sendAllFrom(messages, i)))
      }
      const given = messages[i]!
      const bytes = asBytes(given, address)
      if (IpcError.isIpcError(bytes)) {
        writeOut()
        return Effect.fail(sendError() ?? bytes)
      }
      const message = bytes
      const error = sendError() ??
        (message.byteLength > maxMessageSize
          ? IpcError.frameTooLarge(message.byteLength, maxMessageSize, address)
          : undefined)
      if (error !== undefined) {
        writeOut()
        return Effect.fail(error)
      }
      const written = link!.write(message)
      if (written !== undefined) {
        writeOut()
        return Effect.andThen(reported(written), Effect.suspend(() => sendAllFrom(messages, i + 1)))
      }
      if (!flushScheduled && link!.flush !== undefined) starts = true
      sent(false, message.byteLength)
      if (link!.pending() > highWaterMark) {
        writeOut()
        if (finished) return afterWait
        Latch.closeUnsafe(writableLatch)
        return Effect.andThen(waitWritable, Effect.suspend(() => sendAllFrom(messages, i + 1)))
      }
    }
    writeOut()
    // a link that failed as it wrote the batch out has ended sending: the batch is not on its way
    return finished || sendLoss !== undefined || peerFirst ? afterWait : Effect.void
  }
  const sendAll = (messages: ReadonlyArray<Uint8Array>): Effect.Effect<void, IpcError.IpcError> =>
    Effect.suspend(() => sendAllFrom(messages, 0))

  // ---- the sink -----------------------------------------------------------
  const sink: Sink = {
    message: inbox.push,
    deliver: inbox.deliver,
    heard: () => {
      heard++
    },
    peerTakes: withinWriteTimeout,
    writable: () => {
      if (link !== undefined && link.pending() <= highWaterMark) Latch.openUnsafe(writableLatch)
    },
    flushSoon,
    peerClosed: () => {
      if (peerClosed || finished) return
      peerClosed = true
      // sends fail from here on: ending the input wakes the receiver at once, and what it sends in answer would
      // be accepted and then dropped by a peer that reads no more
      if (!closing && !closeBegun) peerFirst = true
      sendsOpen = false
      inbox.end()
      if (!closing) sayGoodbye() // the answer, after anything still queued
      else abortSenders()
    },
    lost: fail,
    writesLost: (error) => {
      if (finished || sendLoss !== undefined) return
      sendLoss = error
      sendsOpen = false
      abortSenders()
    },
    closed: () => {
      if (finished) return
      if (!closing && !peerClosed && failure === undefined) {
        return fail(IpcError.make("ConnectionLost", "the link closed without a goodbye", address))
      }
      finish()
    },
    get aborted() {
      if (abort === undefined) {
        abort = Deferred.makeUnsafe<never, IpcError.IpcError>()
        if (finished || closing || closeBegun || peerClosed) {
          Deferred.doneUnsafe(abort, Effect.fail(sendError() ?? closedErr))
        }
      }
      return Deferred.await(abort)
    },
    isEnding: () => closing || closeBegun || finished || failure !== undefined
  }

  const opened = open(sink)
  link = opened
  if (finished) opened.destroy()

  if (options.heartbeat !== undefined && opened.ping !== undefined && !finished) {
    const ping = opened.ping
    const interval = Math.min(millis(options.heartbeat.interval), MAX_TIMER_MILLIS)
    const timeout = millis(options.heartbeat.timeout)
    let heardBefore = heard
    let flushesBefore = flushes
    let lastHeard = Date.now()
    // a plain timer, cleared when the channel ends: no fiber outside the user's runtime
    heartbeatTimer = setInterval(() => {
      const now = Date.now()
      if (heard !== heardBefore) {
        heardBefore = heard
        lastHeard = now
      } else if (now - lastHeard > timeout) {
        return fail(IpcError.make("Timeout", `no word from the peer for ${timeout} ms`, address))
      }
      if (flushes === flushesBefore && !closing) {
        ping()
        flushSoon()
      }
      flushesBefore = flushes
    }, interval)
  }

  return {
    channel: IpcChannel.make({
      address,
      peer: options.peer,
      inbox,
      send,
      sendAll,
      close,
      checkedClose,
      closed: Deferred.await(closed)
    }),
    inbox,
    fail
  }
}
