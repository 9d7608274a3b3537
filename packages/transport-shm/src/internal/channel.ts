/**
 * The link of the `shm://` channel (see `ShmChannel` for what it does): the
 * lifecycle, send checks and back-pressure are core's `ChannelEngine`; this
 * is the medium: the outbound ring with its ordered waiting records, the
 * on-demand reader with its spin and doorbell, pinned records and
 * large-message segments, and the goodbye (our ring closed).
 *
 * @internal
 */
import * as ChannelEngine from "@effect-ipc/core/ChannelEngine"
import type * as Inbox from "@effect-ipc/core/Inbox"
import * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import type { NonEmptyReadonlyArray } from "effect/Array"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as ShmChannel from "../ShmChannel.ts"
import * as Header from "./header.ts"
import * as Libc from "./libc.ts"
import * as Processes from "./processes.ts"
import * as Ring from "./ring.ts"
import * as Segments from "./segments.ts"

/** The doorbell: "I wrote into your ring, or freed space in mine". */
export const WAKE: Uint8Array = new Uint8Array([1])

/** How long a large message that cannot be opened waits for its sender to be seen gone (then: `Protocol`). */
const SENDER_GONE_MILLIS = 1000

/**
 * Large messages a channel keeps in their own mappings (in its inbox, or
 * handed out in place); past this, or past `MAX_HELD_SEGMENTS_IN_PROCESS`
 * in the whole process, a large message is copied out and its mapping let go
 * at once. A peer that sends many messages just over half a small ring would
 * otherwise make the reader hold one mapping each, up to its inbox's bounds
 * (4096), and a few such peers would pass the kernel's limit of mappings per
 * process (`vm.max_map_count`, 65 530), which aborts V8.
 */
const MAX_HELD_SEGMENTS = 64
const MAX_HELD_SEGMENTS_IN_PROCESS = 8192
let heldInProcess = 0

/** How long, and how often, a segment that cannot be opened for want of descriptors or memory is tried again. */
const noSpaceRetry = Schedule.spaced("20 millis").pipe(Schedule.upTo({ duration: "1 second" }))

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder()

/** How long one turn of polling looks (yielding the CPU between looks) before it lets the event loop run (ms). */
const POLL_TURN = 0.003

/** Messages below this size are copied when they must wait for room (the caller may reuse its buffer). */
const COPY_BELOW = 64 * 1024
/** Small records a pump copies out before it releases their ring space (it releases the rest as it ends). */
const RELEASE_EVERY = 32

/** What the transport hands over once the two ends have met. */
export interface Link {
  readonly address: string
  readonly peer: IpcChannel.PeerInfo
  /** Our outbound ring (we created it). */
  readonly outbound: Libc.Mapping
  /** The peer's ring, which we read. */
  readonly inbound: Libc.Mapping
  /** The socket beside the rings: doorbells, and the peer's death. */
  readonly control: IpcChannel.IpcChannel
}

/**
 * A record waiting for room in the outbound ring (a large message: first for its segment to be made, until
 * `segmentRoom` allows it; until then it is a `segment` record without `segment`, see `unmade`).
 */
interface Waiting {
  kind: Ring.RecordKind
  /** The record's payload; for a large message whose segment is not made yet, the message itself. */
  payload: Uint8Array
  /** A large message's segment, whose record this is (once made). */
  segment: SentSegment | undefined
  /** A large message's send, completed once the reader has taken its segment. */
  readonly delivery: Delivery | undefined
  /**
   * The bytes it adds to `waitingBytes`, as counted when it was queued (or its segment made): taken
   * off exactly, as a queued caller's buffer may be detached or shrunk meanwhile.
   */
  counted: number
}

/** A large message whose segment is not made yet: its payload is the message itself. */
const unmade = (record: Waiting): boolean => record.kind === Ring.RecordKind.segment && record.segment === undefined

/**
 * What a message that must wait for its turn holds: a copy under `COPY_BELOW` bytes (the caller may reuse its
 * buffer), else the caller's buffer itself, read only when its turn comes.
 */
const held = (message: Uint8Array): Uint8Array => message.byteLength < COPY_BELOW ? new Uint8Array(message) : message

interface Pin {
  readonly end: number
  released: boolean
}

/** A large message not yet taken: copied out (`receive`) or handed out in place (`receiveView`). */
interface Lease {
  /** The message as `receiveView` hands it out: a view of its own, which `release` detaches. */
  readonly inPlace: () => Uint8Array
  /** Lets go of the message's shared memory. */
  readonly release: () => void
}

/**
 * A message segment we made, let go of (descriptor closed, or name removed) once the reader has
 * opened it (`Ring.Producer.segmentsTaken`), or when the channel closes.
 */
interface SentSegment {
  readonly segment: Segments.Outgoing
  /** Its message's send, completed once the reader has taken the segment (or failed if it never will). */
  readonly delivery: Delivery
  /** Its record's payload: the segment's token, for the reader. */
  readonly token: Uint8Array
  /** Its record is in the ring. */
  written: boolean
  /** Bytes of the message it holds. */
  readonly bytes: number
}

/**
 * The send of a large message. Until the reader has taken (opened) its segment, the message's only
 * copy is the sender's (on Linux a memory file reached through the sender's `/proc/<pid>/fd`), which
 * dies with the sender: so the send completes only once the reader has it, and a completed send
 * survives the sender's death as a message in the ring does.
 */
interface Delivery {
  /** How the send ended, once it has. */
  result: Effect.Effect<void, IpcError.IpcError> | undefined
  /** The waiting sender, if any. */
  resume: ((result: Effect.Effect<void, IpcError.IpcError>) => void) | undefined
}

const newDelivery = (): Delivery => ({ result: undefined, resume: undefined })

/** Ends a large message's send (once). */
const endDelivery = (delivery: Delivery, result: Effect.Effect<void, IpcError.IpcError>): void => {
  if (delivery.result !== undefined) return
  delivery.result = result
  const resume = delivery.resume
  delivery.resume = undefined
  // a resumed fiber runs on the caller's stack, and may send again at once: never inside the bookkeeping
  // that settles it (the queue and the counts would change under it), so in a microtask
  if (resume !== undefined) queueMicrotask(() => resume(result))
}

/** Waits for a large message's send to end; an interrupted sender stops waiting (the message still goes). */
const delivered = (delivery: Delivery): Effect.Effect<void, IpcError.IpcError> =>
  Effect.callback((resume) => {
    if (delivery.result !== undefined) return resume(delivery.result)
    delivery.resume = resume
    return Effect.sync(() => {
      delivery.resume = undefined
    })
  })

/**
 * At most this many large-message segments that the reader has not taken (see `segmentRoom`), which
 * also bounds their bytes by the ring's capacity unless only one is out. A message is large when it
 * does not fit in half the ring, so in practice two large messages rarely fit together: beyond the
 * first, one is in flight at a time, and a stream of large messages alternates between writer and
 * reader (the next segment is made once the reader has opened the one before) instead of pipelining.
 */
const SEGMENTS_IN_FLIGHT = 2

/**
 * Builds the channel over `link` in `scope`, the connection's own scope: its
 * worker fiber runs there, closing the channel closes it, and closing it
 * closes the channel (releasing both mappings).
 */
export const make = (
  link: Link,
  scope: Scope.Closeable,
  options: ShmChannel.ShmChannelOptions = {}
): Effect.Effect<ShmChannel.ShmChannel> =>
  Effect.gen(function*() {
    const { address, control } = link
    const maxMessageSize = options.maxMessageSize ?? ShmChannel.DEFAULT_MAX_MESSAGE_SIZE
    const inPlaceThreshold = options.inPlaceThreshold ?? ShmChannel.DEFAULT_IN_PLACE_THRESHOLD
    const spinMillis = Duration.toMillis(Duration.fromInputUnsafe(options.spin ?? 0))
    const pollMillis = Duration.toMillis(Duration.fromInputUnsafe(options.poll ?? ShmChannel.DEFAULT_POLL))
    const linger = Duration.toMillis(Duration.fromInputUnsafe(options.lingerTimeout ?? "2 seconds"))
    const outSnapshot = Header.snapshot(Header.view(link.outbound.buffer))
    const inSnapshot = Header.snapshot(Header.view(link.inbound.buffer))
    const outbound = new Ring.Producer(link.outbound.buffer, outSnapshot.payloadLength)
    const inbound = new Ring.Consumer(link.inbound.buffer, inSnapshot.payloadLength)
    const inlineMax = Math.min(outbound.maxPayload, maxMessageSize)
    const peerClosedError = IpcError.make("Closed", "the peer closed the channel", address)

    // set as `ChannelEngine.make` opens the link (before anything below runs)
    let sink: ChannelEngine.Sink = undefined as unknown as ChannelEngine.Sink
    let inbox: Inbox.Inbox = undefined as unknown as Inbox.Inbox
    let destroyed = false // the engine let go of the link: the rings are not touched again
    let peerGone = false // the peer closed its ring and its socket: we read on, sends fail
    let lostDue: IpcError.IpcError | undefined // the socket broke: the ring is drained, then the link is lost
    /** Our goodbye left: the link is down once the peer answers (closes its ring) or drops the socket. */
    let awaitingAnswer = false
    /** Why the socket ended, once it did. */
    let controlEnded: IpcError.IpcError | undefined

    // ---- the worker ---------------------------------------------------------------------
    // What the synchronous link below asks for and only an Effect can do (ring the doorbell, open
    // a large message's segment, say goodbye, drop the socket) runs in one fiber forked into the
    // connection's scope: it has the user's services, and it ends with the channel. It parks between
    // tasks; `kick` resumes it, which runs it on the caller's stack as far as it goes without waiting.
    let parked: ((effect: Effect.Effect<void>) => void) | undefined
    let doorbellDue = false
    /** A large message's record, taken from the ring; its segment is opened by the worker, which then reads on. */
    let segmentDue: Ring.RecordRef | undefined
    /** Our ring is closed: the worker lets go of our segments and the socket, then calls this. */
    let farewellDue: (() => void) | undefined
    let dropDue = false
    // a kick while the worker is not parked (busy, or between deciding to park and parking: effect may
    // yield to the event loop there) is kept for its next park, which then returns at once
    let kicked = false
    const kick = (): void => {
      const resume = parked
      if (resume === undefined) {
        kicked = true
        return
      }
      parked = undefined
      resume(Effect.void)
    }

    // ---- doorbell -----------------------------------------------------------------
    // The control channel queues the doorbell's frame and writes it in a microtask: until then the
    // peer has not been woken, and spinning for its answer would only burn the time it needs.
    let unflushed = false
    const flushed = () => {
      unflushed = false
    }
    const stats = { spinHits: 0, pollHits: 0, sleeps: 0, doorbells: 0 }
    const ring = (): void => {
      if (destroyed) return
      stats.doorbells++
      doorbellDue = true
      kick()
      if (!unflushed) {
        unflushed = true
        queueMicrotask(flushed)
      }
    }
    /**
     * A receive: `prepare`, then `take` (a look at the inbox, and what to run: the message, or a wait),
     * once any doorbell we rang has gone out (a spinner must not hold it back). One step of effect's run
     * loop wraps it where a message is there (a receive found on the ring adds none of its own).
     */
    const receiving = <A, E, R>(take: () => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
      const prepared = Effect.suspend(() => {
        prepare()
        return take()
      })
      const afterYield = Effect.andThen(Effect.yieldNow, prepared)
      return spinMillis === 0 ? prepared : Effect.suspend(() => {
        if (unflushed) return afterYield
        prepare()
        return take()
      })
    }

    // ---- reading ----------------------------------------------------------------------
    const pins: Array<Pin> = []
    const leases = new WeakMap<Uint8Array, Lease>()
    // entries set in `leases` and not deleted: none, and a receive need not look there (most messages are copies)
    let leased = 0
    // large messages' segments still mapped (in the inbox, or handed out by `receiveView`): released at close
    const heldSegments = new Set<Lease>()
    let freed = false

    /** Frees ring space up to `end` now, or once the pinned records before it are released. */
    const settle = (end: number): void => {
      if (pins.length === 0) {
        inbound.release(end)
        freed = true
      } else {
        pins.push({ end, released: true })
      }
    }

    const releasePins = (): void => {
      let end: number | undefined
      while (pins.length > 0 && pins[0]!.released) end = pins.shift()!.end
      if (destroyed) {
        // the link is gone: the peer's ring stayed mapped only for the records still pinned
        if (pins.length === 0) link.inbound.release()
      } else if (end !== undefined) {
        inbound.release(end)
        if (inbound.takeWriterWaiting()) ring()
      }
    }

    const pinned = (record: Ring.RecordRef): Uint8Array => {
      const pin: Pin = { end: record.end, released: false }
      pins.push(pin)
      // The inbox holds a plain view of the ring, which only `materialize` reads (it copies, then
      // releases); a buffer of the record's own, detached on release, is made only for `receiveView`.
      // (A buffer per record cost a koffi view, and V8 counts its bytes as new memory: at 1 MiB a
      // full collection came every 51 messages instead of every 70, and `receive` ran 1.35x slower.)
      const message = inbound.payload(record)
      let sub: Libc.SubView | undefined
      leased++
      leases.set(message, {
        inPlace: () => {
          sub ??= link.inbound.subView(record.offset, record.length)
          return new Uint8Array(sub.buffer)
        },
        release: () => {
          if (pin.released) return
          pin.released = true
          sub?.release()
          releasePins()
        }
      })
      return message
    }

    // a large message over our `maxMessageSize` is refused before it is mapped, as a stream refuses such a frame
    const messageSizes: Segments.Sizes = {
      min: Header.HEADER_SIZE,
      max: Header.HEADER_SIZE + maxMessageSize,
      tooLarge: (size) => IpcError.frameTooLarge(size - Header.HEADER_SIZE, maxMessageSize, address)
    }

    /**
     * Maps a large message's own segment (checked like a ring: sealed, this
     * user's, a valid header); its name, where it has one, is removed at once
     * (the mapping keeps the memory).
     */
    const openMessage = (record: Ring.RecordRef): Effect.Effect<Uint8Array, IpcError.IpcError> =>
      Effect.gen(function*() {
        const name = textDecoder.decode(inbound.payload(record))
        if (!Segments.tokenPattern.test(name)) {
          return yield* IpcError.make("Protocol", "bad message segment name", address)
        }
        const opened = yield* Effect.exit(
          Segments.openIncoming(name, link.peer.pid, messageSizes, address).pipe(
            // out of descriptors or memory (ours, not the peer's doing): tried again for a while, then NoSpace
            Effect.retry({ schedule: noSpaceRetry, while: (error) => error.reason._tag === "NoSpace" })
          )
        )
        if (Exit.isFailure(opened)) {
          const failure = failureOf(opened)
          if (failure?.reason._tag === "NoSpace" || failure?.reason._tag === "FrameTooLarge") {
            return yield* Effect.fail(failure)
          }
          // a dead sender's segments may be collected before we get to them: the message died with it. A sender
          // killed as we open has closed its descriptors before the kernel, or our control socket, tells it is gone:
          // it is given a moment to be seen gone before its message is called a protocol error. The connection
          // lost (a sender killed, or one that hung up) is `ConnectionLost` at once, as every lost peer is; the
          // open's own reason goes with it (it was dropped: a segment that failed its checks read as a death)
          const pid = link.peer.pid
          const senderGone = () =>
            peerGone || lostDue !== undefined ||
            (pid !== undefined && Processes.liveness({ pid, start: 0, ns: Processes.current().ns }) === "dead")
          for (let waited = 0; !senderGone() && waited < SENDER_GONE_MILLIS; waited += 20) yield* Effect.sleep(20)
          if (senderGone()) {
            return yield* new IpcError.IpcError({
              reason: "ConnectionLost",
              detail: `${
                lostDue !== undefined ? "the connection was lost" : "the peer died"
              } with a large message in flight (${name}), whose segment could not be opened: ${reasonOf(opened)}`,
              address,
              cause: failure
            })
          }
          return yield* IpcError.make(
            "Protocol",
            `a large message's segment ${name} could not be opened: ${reasonOf(opened)}`,
            address
          )
        }
        const mapping = opened.value.mapping
        Segments.consumed(name)
        const checked = yield* Effect.exit(
          Header.validate(Header.view(mapping.buffer), mapping.size, Header.Kind.message, name)
        )
        if (Exit.isFailure(checked)) {
          mapping.release()
          return yield* IpcError.make(
            "Protocol",
            `a large message's segment is not valid: ${reasonOf(checked)}`,
            address
          )
        }
        const view = new Uint8Array(mapping.buffer, Header.HEADER_SIZE, checked.value.payloadLength)
        if (heldSegments.size >= MAX_HELD_SEGMENTS || heldInProcess >= MAX_HELD_SEGMENTS_IN_PROCESS) {
          // enough mappings held (a kernel limits a process's: 65 530 by default): this one is copied and let go
          const copy = Buffer.allocUnsafe(view.byteLength)
          copy.set(view)
          mapping.release()
          return copy
        }
        const lease: Lease = {
          inPlace: () => view,
          release: () => {
            if (!heldSegments.delete(lease)) return
            heldInProcess--
            mapping.release()
          }
        }
        heldSegments.add(lease)
        heldInProcess++
        leased++
        leases.set(view, lease)
        return view
      })

    /** The worker's part of `pump`: opens the segment of `segmentDue`, delivers it, and reads on. */
    const takeSegment = (record: Ring.RecordRef): Effect.Effect<void> =>
      Effect.map(Effect.result(openMessage(record)), (message) => {
        segmentDue = undefined
        if (destroyed) {
          if (message._tag === "Success") leases.get(message.success)?.release()
          return
        }
        settle(record.end)
        // one we could not open is not taken: its sender's send fails with the channel, not as delivered
        if (message._tag === "Failure") {
          return sink.lost(lostDue === undefined ? message.failure : withLoss(message.failure, lostDue))
        }
        // the writer counts the segments we took, not our head: a pinned record before this one holds the head
        inbound.tookSegment()
        if (inbound.takeWriterWaiting()) ring()
        sink.message(message.success)
        if (lostDue !== undefined) drain()
        else wake()
      })

    /**
     * Moves complete records from the ring into the inbox until it is full or
     * the ring is empty, then decides whether input has ended.
     */
    const pump = (): void => {
      if (destroyed || inbox.isPaused() || inbox.isDone() || segmentDue !== undefined || lostDue !== undefined) return
      freed = false
      // read before looking for records: a producer closes its ring after its last write
      let closed = inbound.isClosed()
      // small records copied out are released together, every RELEASE_EVERY of them and as the pump ends: a
      // release is a store the writer's core then has to fetch, and one per message cost the reader its rate
      let due: number | undefined
      let unreleased = 0
      while (true) {
        const record = inbound.next()
        if (record === undefined) break
        if (record instanceof IpcError.IpcError) return sink.lost(new IpcError.IpcError({ ...fields(record), address }))
        if (record.kind === Ring.RecordKind.segment) {
          segmentDue = record
          break
        }
        // over our limit, as a large message's segment over it is (a peer whose own limit is higher)
        if (record.length > maxMessageSize) {
          return sink.lost(IpcError.frameTooLarge(record.length, maxMessageSize, address))
        }
        let message: Uint8Array
        if (record.length >= inPlaceThreshold) {
          message = pinned(record)
        } else {
          message = Buffer.allocUnsafe(record.length)
          message.set(inbound.payload(record))
          if (pins.length > 0) {
            settle(record.end)
          } else if (++unreleased === RELEASE_EVERY) {
            unreleased = 0
            due = undefined
            settle(record.end)
          } else {
            due = record.end
          }
        }
        if (!sink.message(message)) {
          // the inbox is full: read on once it resumes us
          closed = false
          break
        }
      }
      // `due` was read while nothing was pinned, so it comes before every pin since: released at once
      if (due !== undefined) {
        inbound.release(due)
        freed = true
      }
      if (freed && inbound.takeWriterWaiting()) ring()
      if (segmentDue !== undefined) return kick()
      if (closed && !inbound.hasNext()) sink.peerClosed()
    }

    /**
     * The socket broke: delivers every complete record left in the ring
     * (copied, since the rings are released as the link goes), opening the
     * segments of large ones, then reports the loss.
     */
    const drain = (): void => {
      if (destroyed || segmentDue !== undefined) return
      while (true) {
        const record = inbound.next()
        if (record === undefined) break
        if (record instanceof IpcError.IpcError || record.length > maxMessageSize) break
        if (record.kind === Ring.RecordKind.segment) {
          segmentDue = record
          return kick()
        }
        const copy = Buffer.allocUnsafe(record.length)
        copy.set(inbound.payload(record))
        sink.message(copy)
      }
      sink.lost(lostDue!)
    }

    /**
     * Busy-waits for input up to `spin`: tightly for the first 20 us (a running
     * peer answers within a few), then giving the CPU away between looks, so
     * that on a busy machine the peer gets to run.
     */
    const spinRead = (): void => {
      const start = performance.now()
      const deadline = start + spinMillis
      const tight = start + Math.min(spinMillis, 0.02)
      inbound.disarmReader()
      for (let now = start; now < deadline; now = performance.now()) {
        for (let i = 0; i < 64; i++) {
          if (inbound.hasNext() || inbound.isClosed()) {
            stats.spinHits++
            return pump()
          }
        }
        if (now > tight) Libc.yieldCpu()
      }
    }

    /** Sets the reader-waiting flag, then looks once more (a write published meanwhile is read now). */
    const arm = (): void => {
      stats.sleeps++
      inbound.armReader()
      if (inbound.hasNext() || inbound.isClosed()) {
        inbound.disarmReader()
        pump()
      }
    }

    const idle = (): boolean => inbox.size() === 0 && !inbox.isDone() && segmentDue === undefined

    // ---- polling ------------------------------------------------------------------------
    // A receiver with nothing to read looks at the ring once per turn of the event loop (which runs
    // on meanwhile) until `poll` has passed since it last asked, and only then arms the doorbell:
    // a reply that comes within the window costs no system call on either side (the writer rings
    // only an armed reader), and an idle channel stops costing CPU once the window is over.
    // The window adapts: a wait that polling ended, or that the doorbell ended soon after the
    // window, widens it (up to `poll`); a longer wait (a slow peer, or one that gets no CPU on a
    // busy machine, where polling would only take the CPU from it) narrows it, down to none.
    let window = pollMillis
    let pollUntil = 0
    let waitStart = 0
    let polling = false
    let armedAfterPoll = false
    const pollTurn = (): void => {
      polling = false
      if (destroyed || lostDue !== undefined || !idle()) return
      const now = performance.now()
      const turnEnd = Math.min(pollUntil, now + POLL_TURN)
      let at = now
      for (;;) {
        if (inbound.hasNext() || inbound.isClosed()) {
          stats.pollHits++
          window = Math.min(pollMillis, window * 2)
          pump()
          if (!idle()) return
        }
        if (at >= turnEnd) break
        Libc.yieldCpu()
        at = performance.now()
      }
      if (performance.now() < pollUntil) {
        polling = true
        Libc.yieldCpu()
        setImmediate(pollTurnDelivering)
      } else {
        armedAfterPoll = true
        arm()
      }
    }
    // what a turn of polling found reaches a waiting receiver as the turn ends, inside its callback
    const pollTurnDelivering = (): void => sink.deliver(pollTurn)
    /** A doorbell found input: had polling a little longer been worth it? */
    const doorbellAnswered = (): void => {
      armedAfterPoll = false
      const waited = performance.now() - waitStart
      window = waited < pollMillis ? Math.min(pollMillis, Math.max(window, waited * 2, 0.02)) : window / 2
      if (window < 0.005) window = 0
    }

    /** Before a receiver waits: read the ring, spin and poll if asked to, and arm the doorbell if still empty. */
    const prepare = (): void => {
      if (destroyed || lostDue !== undefined || !idle()) return
      pump()
      if (!idle()) return
      if (spinMillis > 0) {
        spinRead()
        if (!idle()) return
      }
      if (pollMillis > 0) {
        waitStart = performance.now()
        armedAfterPoll = window === 0
        if (window === 0) return arm()
        pollUntil = waitStart + window
        if (!polling) {
          polling = true
          setImmediate(pollTurnDelivering)
        }
        return
      }
      arm()
    }

    /**
     * Called on a doorbell, and when the inbox has room again. A doorbell finds
     * nothing when an earlier read took what it rang for; a receiver may still
     * be waiting then, so the flag is set again (a spare doorbell costs a
     * wake-up, a missing one a hang).
     */
    function wake(): void {
      if (destroyed || lostDue !== undefined) return
      // the peer's answer to our goodbye rings too
      if (awaitingAnswer) return answerOrLoss()
      if (armedAfterPoll && (inbound.hasNext() || inbound.isClosed())) doorbellAnswered()
      pump()
      // a polling reader arms once its window is over
      if (inbox.size() === 0 && !inbox.isDone() && !polling) arm()
      if (waiting.length > 0) flushWaiting()
      if (sentSegments.length > 0) watchTaken()
      // the peer closed its ring: it takes nothing more (even while our own inbox is too full to read its end)
      if (!destroyed && inbound.isClosed()) failUntaken(peerClosedError)
    }

    // ---- writing ------------------------------------------------------------------------
    const waiting: Array<Waiting> = []
    let waitingBytes = 0
    /** Large messages' segments the reader has not taken, in the order of their records (written ones first). */
    const sentSegments: Array<SentSegment> = []
    /** Segments let go of after the reader took them (wrapping, as the reader's count in the ring). */
    let segmentsForgotten = outbound.segmentsTaken()
    /** A large message's segment could not be made while it waited: the channel fails with this. */
    let broken: IpcError.IpcError | undefined

    /**
     * Lets go of the segments the reader has taken (opened: it has them mapped, or never will), as
     * it counts them in the ring; never of one whose record is not written (a count beyond those is
     * the peer's mistake, and only costs it its messages).
     */
    const forgetTaken = (): void => {
      // the rings are let go of once the link is destroyed (which handed every segment over)
      if (destroyed) return
      while (
        sentSegments.length > 0 && sentSegments[0]!.written &&
        ((outbound.segmentsTaken() - segmentsForgotten) >>> 0) > 0
      ) {
        const first = sentSegments.shift()!
        segmentsForgotten = (segmentsForgotten + 1) >>> 0
        first.segment.handedOver()
        endDelivery(first.delivery, Effect.void)
      }
    }

    /**
     * While a large message's record is written and its segment not taken, the writer flag stays
     * armed: the reader rings once it has opened it, and its send completes then (see `Delivery`).
     */
    const watchTaken = (): void => {
      forgetTaken()
      if (destroyed || sentSegments.length === 0 || !sentSegments[0]!.written) return
      outbound.armWriter()
      // a take between our look and the flag rang no one: look again
      forgetTaken()
    }

    /**
     * The peer closed its ring: it reads no more (its inbox was shut), so the large messages it has not
     * taken it never will. Their sends fail with `error` now, queued ones too, not after the linger.
     */
    const failUntaken = (error: IpcError.IpcError): void => {
      forgetTaken()
      for (const sent of sentSegments) endDelivery(sent.delivery, Effect.fail(error))
      for (const left of waiting) if (left.delivery !== undefined) endDelivery(left.delivery, Effect.fail(error))
    }

    /** Why a large message's send fails when its segment was never taken. */
    const notTaken = () =>
      IpcError.make(
        "ConnectionLost",
        "the peer did not take a large message before the channel ended: it was not delivered",
        address
      )

    /**
     * Back-pressure for large messages, whose records are small: a segment of `bytes` may be made now
     * when, with it, the segments the reader has not taken hold at most the ring's capacity in bytes
     * (and `SEGMENTS_IN_FLIGHT`), or when none is outstanding (so a message of any size can go).
     * Taken means opened, whether or not the reader's head has moved past the record (a record
     * before it that a consumer holds in place keeps the head back).
     */
    const segmentRoom = (bytes: number): boolean => {
      forgetTaken()
      return sentSegments.length === 0 ||
        (sentSegments.length < SEGMENTS_IN_FLIGHT &&
          sentSegments.reduce((sum, sent) => sum + sent.bytes, 0) + bytes <= outbound.capacity)
    }

    /** Lets go of every segment not taken yet (the channel closes: the reader picks up no more). */
    const handOverAll = (): void => {
      // (a take the reader counted that no doorbell has told us of yet is a delivery all the same: see `failUntaken`)
      failUntaken(notTaken())
      for (const sent of sentSegments.splice(0)) sent.segment.handedOver()
    }

    /**
     * Puts a large message in a segment of its own, header first (from then on a collector can tell
     * whose it is); it is on `sentSegments` from its creation, so that closing the channel lets go of it
     * if the peer never picks it up.
     */
    const makeSegment = (message: Uint8Array, delivery: Delivery): SentSegment | IpcError.IpcError => {
      const made = Segments.createOutgoingNow("m", Header.HEADER_SIZE + message.byteLength, address)
      if (made instanceof IpcError.IpcError) return made
      const header = Header.view(made.mapping.buffer)
      Header.initialise(header, {
        kind: Header.Kind.message,
        ttlMillis: 0,
        payloadLength: message.byteLength,
        createdAt: Date.now()
      })
      new Uint8Array(made.mapping.buffer, Header.HEADER_SIZE, message.byteLength).set(message)
      Header.publish(header)
      made.mapping.release()
      const entry: SentSegment = {
        segment: made,
        delivery,
        token: textEncoder.encode(made.token),
        written: false,
        bytes: message.byteLength
      }
      sentSegments.push(entry)
      return entry
    }

    /**
     * The writer is held up until `ready(bytes)`: arms the writer flag (the reader rings once it frees space,
     * or has opened a large message), then looks once more; false when it is ready after all (disarmed again).
     */
    const stillWaits = (ready: (bytes: number) => boolean, bytes: number): boolean => {
      outbound.armWriter()
      if (!ready(bytes)) return true
      // a written large message not taken yet needs the flag still (see `watchTaken`)
      if (sentSegments.length === 0 || !sentSegments[0]!.written) outbound.disarmWriter()
      return false
    }
    const fits = (bytes: number): boolean => outbound.fits(bytes)

    const afterWrite = (): void => {
      if (outbound.takeReaderWaiting()) ring()
    }

    /**
     * A large message's record is in the ring: the reader is rung whether it waits or not (it opens
     * the segment as the doorbell comes, so the send completes without waiting for a `receive`), and
     * the writer watches for the take.
     */
    const segmentWritten = (): void => {
      ring()
      watchTaken()
    }

    /** Sets our ring's "closed" flag after its last record (and rings): the worker says goodbye from there. */
    const closeRing = (): void => {
      outbound.close()
      // rung whether or not the reader waits: one whose inbox is full learns at once that it will read no
      // more, and fails its large sends that we will never take (see `wake`)
      outbound.takeReaderWaiting()
      ring()
      kick()
    }

    // In blocking mode the records a send writes are published (the tail stored) by the engine's
    // flush: at once for the first send of a turn, with the rest of a burst at its end (or every
    // `maxBurstDelay`; a send that waits for room ends the turn). The reader then takes a burst in
    // one look, and the tail's cache line crosses between the cores once per burst, not once per
    // message. The goodbye publishes first. A spinner publishes each record as it writes it: its
    // turn does not end while it spins, so a reply would wait for its next receive (0.6 µs more per
    // round trip here).
    const deferPublish = spinMillis === 0
    let unpublished = false
    const publish = (): void => {
      if (!unpublished || destroyed) return
      unpublished = false
      outbound.publish()
      afterWrite()
    }

    /**
     * Writes waiting records in order while they fit, making large messages' segments as
     * `segmentRoom` allows; arms the writer flag if some still wait (the reader rings once it
     * frees space in the ring, or has opened a large message).
     */
    const flushWaiting = (): void => {
      if (destroyed || broken !== undefined) return
      let wrote = false
      let wroteSegment = false
      while (waiting.length > 0) {
        const next = waiting[0]!
        if (unmade(next) && next.payload.byteLength <= inlineMax) {
          // its sender was interrupted and then shrank or detached its buffer: what it holds now fits inline
          next.kind = Ring.RecordKind.data
        }
        if (unmade(next)) {
          // the reader has not opened the large messages before it: wait until it counts them taken
          const bytes = next.payload.byteLength
          if (!segmentRoom(bytes) && stillWaits(segmentRoom, bytes)) break
          const made = makeSegment(next.payload, next.delivery!)
          if (made instanceof IpcError.IpcError) {
            // its sender waits on the engine with the others: the channel fails (not inside this call,
            // which may be a send's), and they with it
            broken = made
            queueMicrotask(() => sink.lost(made))
            break
          }
          waitingBytes += made.token.byteLength - next.counted
          next.counted = made.token.byteLength
          next.payload = made.token
          next.segment = made
        }
        if (!outbound.write(next.kind, next.payload)) {
          if (outbound.damage !== undefined) {
            // the reader's head is where no reader puts it: the ring will never have room again
            const damage = new IpcError.IpcError({ ...fields(outbound.damage), address })
            broken = damage
            queueMicrotask(() => sink.lost(damage))
            break
          }
          if (stillWaits(fits, next.payload.byteLength)) break
          continue
        }
        waiting.shift()
        waitingBytes -= next.counted
        wrote = true
        if (next.segment !== undefined) {
          next.segment.written = true
          wroteSegment = true
        } else if (next.delivery !== undefined) {
          // a large message whose buffer shrank (or was detached) while it waited went as a record: in the ring
          endDelivery(next.delivery, Effect.void)
        }
      }
      // the goodbye, after everything that waited: the worker takes it from here
      if (waiting.length === 0 && farewellDue !== undefined) closeRing()
      if (wrote) {
        afterWrite()
        sink.writable()
      }
      if (wroteSegment) ring()
      if (sentSegments.length > 0) watchTaken()
    }

    /** Busy-waits for room in the outbound ring up to `spin`, as `spinRead` waits for input. */
    const spinWrite = (kind: Ring.RecordKind, payload: Uint8Array): boolean => {
      const start = performance.now()
      const deadline = start + spinMillis
      const tight = start + Math.min(spinMillis, 0.02)
      for (let now = start; now < deadline; now = performance.now()) {
        for (let i = 0; i < 64; i++) {
          if (outbound.fits(payload.byteLength)) return outbound.write(kind, payload)
        }
        if (now > tight) Libc.yieldCpu()
      }
      return false
    }

    /**
     * Writes a record now if nothing waits before it and it fits (after spinning, if asked to);
     * `later`: leaves it to the next `publish`.
     */
    const writeNow = (kind: Ring.RecordKind, payload: Uint8Array, later = false): boolean => {
      if (waiting.length > 0) return false
      if (outbound.write(kind, payload, !later) || (spinMillis > 0 && !unflushed && spinWrite(kind, payload))) {
        if (later) unpublished = true
        else afterWrite()
        return true
      }
      return false
    }

    const wait = (record: Omit<Waiting, "counted">): void => {
      const counted = record.payload.byteLength
      waiting.push({ ...record, counted })
      waitingBytes += counted
      flushWaiting()
    }

    /**
     * A large message goes into a segment of its own and the ring carries its name. The segment is
     * made now if nothing waits before it and `segmentRoom` allows (a failure is this send's);
     * otherwise the message waits in order, and the send with it on the engine (as for a full ring,
     * within `writeTimeout`), until the reader has opened enough of the large messages before it.
     * A send interrupted meanwhile leaves the message queued: its segment is made in its turn, from
     * the caller's buffer (copied when it began to wait only if under `COPY_BELOW`).
     */
    const writeLarge = (message: Uint8Array): Effect.Effect<void, IpcError.IpcError> => {
      const delivery = newDelivery()
      if (waiting.length === 0 && segmentRoom(message.byteLength)) {
        const made = makeSegment(message, delivery)
        if (made instanceof IpcError.IpcError) return Effect.fail(made)
        if (writeNow(Ring.RecordKind.segment, made.token)) {
          made.written = true
          segmentWritten()
        } else {
          wait({ kind: Ring.RecordKind.segment, payload: made.token, segment: made, delivery })
        }
      } else {
        wait({ kind: Ring.RecordKind.segment, payload: held(message), segment: undefined, delivery })
      }
      // like a wait for room in the ring, under `writeTimeout`
      return sink.peerTakes(delivered(delivery))
    }

    // ---- goodbye ----------------------------------------------------------------------------
    /** Lets go of the large messages in flight, waiting up to `linger` for the peer to pick them up. */
    const removeSentSegments = Effect.gen(function*() {
      const deadline = Date.now() + linger
      // a peer that closed its ring takes nothing more
      while (!peerGone && !destroyed && !inbound.isClosed() && Date.now() < deadline) {
        forgetTaken()
        if (sentSegments.length === 0 || !sentSegments[0]!.written) break
        yield* Effect.sleep("5 millis")
      }
      handOverAll()
    })

    /**
     * After our goodbye: the peer answered (closed its ring: it read everything before our goodbye), and
     * the link is down; or it dropped the socket without answering (it refused a message over its
     * `maxMessageSize`, or died), and `IpcChannel.closeChecked` fails. A peer that does neither is let go
     * of when the engine's linger runs out.
     */
    const answerOrLoss = (): void => {
      // (the scope let go of the rings without waiting for the answer: the engine's linger ends the link)
      if (!awaitingAnswer || destroyed || link.inbound.isReleased()) return
      if (inbound.isClosed()) {
        awaitingAnswer = false
        return sink.closed()
      }
      if (controlEnded === undefined) return
      awaitingAnswer = false
      sink.lost(
        IpcError.make(
          "ConnectionLost",
          `the peer dropped the connection without answering our goodbye: ${controlEnded.detail}`,
          address
        )
      )
    }

    /**
     * Our ring is closed (and the doorbell rung): let go of the segments, say that our goodbye left,
     * then wait for the peer's answer (the engine destroys the link once it comes, or its linger ends).
     */
    const farewell = (sent: () => void): Effect.Effect<void> =>
      removeSentSegments.pipe(
        Effect.andThen(Effect.sync(() => {
          sent()
          awaitingAnswer = true
          answerOrLoss()
        }))
      )

    /**
     * A peer that closed its ring before ours reads no more (its inbox was
     * shut): the records still waiting are dropped and our goodbye goes now.
     */
    const dropWaiting = (): void => {
      if (!inbound.isClosed()) return
      failUntaken(peerClosedError)
      if (waiting.length === 0) return
      waiting.length = 0
      waitingBytes = 0
      outbound.disarmWriter()
    }

    const onControlEnd = (error: IpcError.IpcError): void => {
      if (destroyed) return
      controlEnded ??= error
      if (awaitingAnswer) return answerOrLoss()
      if (farewellDue !== undefined && waiting.length > 0) {
        dropWaiting()
        if (waiting.length === 0) flushWaiting()
        return
      }
      if (farewellDue !== undefined || sink.isEnding()) return
      if (error.reason._tag === "Closed" && inbound.isClosed()) {
        // the peer closed: what it wrote is read on demand, and its end ends our input; the large
        // messages it had not taken it never will
        peerGone = true
        failUntaken(peerClosedError)
        return pump()
      }
      lostDue = IpcError.make("ConnectionLost", `the peer is gone: ${error.detail}`, address)
      drain()
    }

    // the ring is the buffer: a send that does not fit waits for room
    const engine = ChannelEngine.make(
      { ...options, address, peer: link.peer, maxMessageSize, highWaterMark: 0 },
      (given) => {
        sink = given
        return {
          write: (message) => {
            if (peerGone) return Effect.fail(peerClosedError)
            if (message.byteLength > inlineMax) return writeLarge(message)
            if (writeNow(Ring.RecordKind.data, message, deferPublish)) return
            wait({ kind: Ring.RecordKind.data, payload: held(message), segment: undefined, delivery: undefined })
          },
          pending: () => waitingBytes,
          ...(deferPublish ? { flush: publish } : {}),
          resume: wake,
          goodbye: (sent) => {
            // the close flag must not show before the last records do (the engine's flush may still be due)
            publish()
            dropWaiting()
            farewellDue = sent
            // after everything waiting: the ring closes once they are written
            if (waiting.length === 0) closeRing()
          },
          destroy: () => {
            // a take the reader counted that no doorbell has told us of yet is a delivery (read while mapped)
            forgetTaken()
            destroyed = true
            handOverAll()
            link.outbound.release()
            // views of the peer's ring still held (handed out, or in the inbox) stay valid until they
            // are released, or `close` (or the scope's end) detaches them
            if (pins.every((pin) => pin.released)) link.inbound.release()
            dropDue = true
            kick()
          }
        }
      }
    )
    inbox = engine.inbox

    const task: Effect.Effect<void> = Effect.suspend(() => {
      if (doorbellDue) {
        doorbellDue = false
        // a failure to send shows up on the control channel's reader
        if (!destroyed) return Effect.ignore(control.send(WAKE))
      }
      if (farewellDue !== undefined && waiting.length === 0 && !destroyed) {
        const sent = farewellDue
        farewellDue = undefined
        return farewell(sent)
      }
      if (dropDue) {
        dropDue = false
        return control.close
      }
      if (destroyed) return park
      return segmentDue === undefined ? park : takeSegment(segmentDue)
    })
    const park = Effect.callback<void>((resume) => {
      if (kicked) {
        kicked = false
        return resume(Effect.void)
      }
      parked = resume
      return Effect.sync(() => {
        parked = undefined
      })
    })
    yield* Effect.forever(task, { disableYield: true }).pipe(
      // a defect would end the worker and with it every doorbell: fail the channel instead of stalling it
      Effect.catchDefect((defect) =>
        Effect.andThen(
          Effect.sync(() =>
            engine.fail(IpcError.make("Unknown", `the channel's worker stopped: ${String(defect)}`, address))
          ),
          control.close
        )
      ),
      Effect.forkIn(scope, { startImmediately: true })
    )

    yield* control.receiveAll.pipe(
      Effect.tap(() => Effect.sync(wake)),
      Effect.forever,
      Effect.catch((error) => Effect.sync(() => onControlEnd(error))),
      Effect.forkIn(scope)
    )

    const releaseMappings = Effect.sync(() => {
      link.outbound.release()
      link.inbound.release()
      // views of large messages read as empty once the channel is closed, as views of the ring do
      for (const lease of heldSegments) lease.release()
    })
    // the scope's end closes the channel (first), then lets go of the rings still mapped
    yield* Scope.addFinalizer(scope, releaseMappings)
    // the socket goes with the scope, also when the engine's linger ended the worker in the middle of its farewell
    yield* Scope.addFinalizer(scope, control.close)
    yield* Scope.addFinalizer(scope, engine.channel.close)
    // the link stays up until the peer answers our goodbye (or the linger ends): its rings and socket go then
    const close = IpcChannel.extendClose(
      engine.channel.close,
      (inner) =>
        inner.pipe(
          Effect.andThen(engine.channel.closed),
          Effect.andThen(releaseMappings),
          Effect.andThen(Scope.close(scope, Exit.void))
        )
    )

    /** A message as `receive` returns it: a large one still in shared memory is copied and released. */
    const materialize = (message: Uint8Array): Uint8Array => {
      if (leased === 0) return message
      const lease = leases.get(message)
      if (lease === undefined) return message
      leased--
      leases.delete(message)
      const copy = Buffer.allocUnsafe(message.byteLength)
      copy.set(message)
      lease.release()
      return copy
    }
    const materializeAll = (batch: NonEmptyReadonlyArray<Uint8Array>) =>
      batch.map(materialize) as unknown as NonEmptyReadonlyArray<Uint8Array>
    const poll = (): Uint8Array | undefined => {
      const message = inbox.poll()
      return message === undefined ? undefined : materialize(message)
    }
    const pollAll = (): NonEmptyReadonlyArray<Uint8Array> | undefined => {
      const batch = inbox.pollAll()
      return batch === undefined ? undefined : materializeAll(batch)
    }
    const takeWaiting = Effect.map(inbox.take, materialize)
    const pullWaiting = Effect.map(inbox.pull, materializeAll)
    const take: Inbox.Inbox["take"] = receiving(() => {
      const message = poll()
      return message === undefined ? takeWaiting : Effect.succeed(message)
    })
    const pull: Inbox.Inbox["pull"] = receiving(() => {
      const batch = pollAll()
      return batch === undefined ? pullWaiting : Effect.succeed(batch)
    })
    const nextWaiting = Effect.map(inbox.next, materializeAll)
    const next: Inbox.Inbox["next"] = receiving(() => nextWaiting)
    const viewWaiting = Effect.flatMap(inbox.take, (message) => {
      const lease = leases.get(message)
      if (lease === undefined) return Effect.succeed(message)
      leased--
      leases.delete(message)
      return Effect.as(Effect.addFinalizer(() => Effect.sync(lease.release)), lease.inPlace())
    })
    const receiveView: ShmChannel.ShmChannel["receiveView"] = receiving(() => viewWaiting)
    // as the channel's own (`pull` with the end as `Closed`), without its wrapper around a receive that finds messages
    const receiveAllWaiting = Effect.catchTag(pullWaiting, "Done", () => Effect.fail(IpcError.closedByPeer(address)))
    const receiveAll: ShmChannel.ShmChannel["receiveAll"] = receiving(() => {
      const batch = pollAll()
      return batch === undefined ? receiveAllWaiting : Effect.succeed(batch)
    })

    const channel = IpcChannel.make({
      address,
      peer: link.peer,
      inbox: { ...inbox, poll, pollAll, take, pull, next },
      send: engine.channel.send,
      sendAll: engine.channel.sendAll,
      close,
      closed: engine.channel.closed
    })
    return {
      ...channel,
      [ShmChannel.TypeId]: ShmChannel.TypeId,
      receiveAll,
      receiveView,
      stats: Effect.sync(() => ({ ...stats }))
    }
  })

const fields = (error: IpcError.IpcError) => ({ reason: error.reason._tag, detail: error.detail })

/** The error an exit failed with, if it failed with one (not a defect or an interruption). */
const failureOf = (exit: Exit.Failure<unknown, IpcError.IpcError>): IpcError.IpcError | undefined => {
  const found = exit.cause.reasons.find((r) => r._tag === "Fail")
  return found !== undefined && found._tag === "Fail" ? found.error : undefined
}

/**
 * A large message's failure once the connection was lost: `ConnectionLost` (every lost peer is), its detail
 * saying why the message could not be taken too, the failure as its cause (one already a loss as it is).
 */
const withLoss = (failure: IpcError.IpcError, lost: IpcError.IpcError): IpcError.IpcError =>
  failure.reason._tag === "ConnectionLost" ? failure : new IpcError.IpcError({
    reason: "ConnectionLost",
    detail: `${lost.detail}; a large message in flight could not be taken: ${failure.detail}`,
    address: lost.address ?? failure.address,
    cause: failure
  })

const reasonOf = (exit: Exit.Failure<unknown, IpcError.IpcError>): string => failureOf(exit)?.detail ?? "unknown"
