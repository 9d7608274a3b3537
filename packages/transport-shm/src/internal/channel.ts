/**
 * The engine of the `shm://` channel (see `ShmChannel` for what it does):
 * the send path with its ordered waiting senders, the on-demand reader with
 * its spin and doorbell, pinned records and large-message segments, and the
 * graceful close.
 *
 * @internal
 */
import * as Inbox from "@effect-ipc/core/Inbox"
import * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import type { NonEmptyReadonlyArray } from "effect/Array"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as ShmChannel from "../ShmChannel.ts"
import * as Header from "./header.ts"
import * as Libc from "./libc.ts"
import * as Processes from "./processes.ts"
import * as Ring from "./ring.ts"
import * as Segments from "./segments.ts"

/** The doorbell: "I wrote into your ring, or freed space in mine". */
export const WAKE: Uint8Array = new Uint8Array([1])

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder()

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

interface PendingSend {
  readonly kind: Ring.RecordKind
  readonly payload: Uint8Array
  readonly resume: (effect: Effect.Effect<void, IpcError.IpcError>) => void
}

interface Pin {
  readonly end: number
  released: boolean
}

/** A large message not yet taken: copy it (`receive`) or hand it out in place (`receiveView`). */
type Lease = () => void

/** A message segment we sent, let go of (descriptor closed, or name removed) once read or when the channel closes. */
interface SentSegment {
  readonly segment: Segments.Outgoing
  end: number | undefined
}

const behind = (position: number, end: number): boolean => ((end - position) >>> 0) < 0x8000_0000 && position !== end

/**
 * Builds the channel over `link` in `scope`, the connection's own scope: its
 * reader fiber runs there, closing the channel closes it, and closing it
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
    const linger = Duration.toMillis(Duration.fromInputUnsafe(options.lingerTimeout ?? "2 seconds"))
    const outSnapshot = Header.snapshot(Header.view(link.outbound.buffer))
    const inSnapshot = Header.snapshot(Header.view(link.inbound.buffer))
    const outbound = new Ring.Producer(link.outbound.buffer, outSnapshot.payloadLength)
    const inbound = new Ring.Consumer(link.inbound.buffer, inSnapshot.payloadLength)
    const inlineMax = Math.min(outbound.maxPayload, maxMessageSize)

    const closedError = IpcError.make("Closed", "the channel is closed", address)
    const peerClosedError = IpcError.make("Closed", "the peer closed the channel", address)
    let failure: IpcError.IpcError | undefined
    let closing = false
    let finished = false
    let peerDone: IpcError.IpcError | undefined
    const closed = Deferred.makeUnsafe<void>()

    const inbox = Inbox.make({
      maxMessages: options.maxBufferedMessages,
      maxBytes: options.maxBufferedBytes,
      onResume: () => wake()
    })

    // ---- the worker ---------------------------------------------------------------------
    // What the synchronous engine below asks for and only an Effect can do (ring the doorbell, open
    // a large message's segment, drop the link) runs in one fiber forked into the connection's
    // scope: it has the user's services, and it ends with the channel. It parks between tasks;
    // `kick` resumes it, which runs it on the caller's stack as far as it goes without waiting.
    let parked: ((effect: Effect.Effect<void>) => void) | undefined
    let doorbellDue = false
    /** A large message's record, taken from the ring; its segment is opened by the worker, which then reads on. */
    let segmentDue: Ring.RecordRef | undefined
    let dropDue = false
    const kick = (): void => {
      const resume = parked
      if (resume === undefined) return
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
    const stats = { spinHits: 0, sleeps: 0, doorbells: 0 }
    const ring = (): void => {
      if (finished) return
      stats.doorbells++
      doorbellDue = true
      kick()
      if (!unflushed) {
        unflushed = true
        queueMicrotask(flushed)
      }
    }
    /** Runs `effect` once any doorbell we rang has gone out (a spinner must not hold it back). */
    const afterDoorbells = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      Effect.suspend(() => spinMillis > 0 && unflushed ? Effect.andThen(Effect.yieldNow, effect) : effect)

    // ---- reading ----------------------------------------------------------------------
    const pins: Array<Pin> = []
    const leases = new WeakMap<Uint8Array, Lease>()
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
      if (end !== undefined && !finished) {
        inbound.release(end)
        if (inbound.takeWriterWaiting()) ring()
      }
    }

    const pinned = (record: Ring.RecordRef): Uint8Array => {
      const sub = link.inbound.subView(record.offset, record.length)
      const pin: Pin = { end: record.end, released: false }
      pins.push(pin)
      const view = new Uint8Array(sub.buffer)
      leases.set(view, () => {
        if (pin.released) return
        pin.released = true
        sub.release()
        releasePins()
      })
      return view
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
        const opened = yield* Effect.exit(Segments.openIncoming(name, link.peer.pid, Header.HEADER_SIZE, address))
        if (Exit.isFailure(opened)) {
          // a dead sender's segments may be collected before we get to them: the message died with it
          const pid = link.peer.pid
          const senderDead = peerDone !== undefined ||
            (pid !== undefined && Processes.liveness({ pid, start: 0, ns: Processes.current().ns }) === "dead")
          return yield* senderDead
            ? IpcError.make("ConnectionLost", `the peer died with a large message in flight (${name})`, address)
            : IpcError.make(
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
        leases.set(view, () => mapping.release())
        return view
      })

    /** The worker's part of `pump`: opens the segment of `segmentDue`, delivers it, and reads on. */
    const takeSegment = (record: Ring.RecordRef): Effect.Effect<void> =>
      Effect.map(Effect.result(openMessage(record)), (message) => {
        segmentDue = undefined
        if (finished) {
          if (message._tag === "Success") leases.get(message.success)?.()
          return
        }
        settle(record.end)
        if (freed && inbound.takeWriterWaiting()) ring()
        if (message._tag === "Failure") return fail(message.failure)
        inbox.push(message.success)
        wake()
      })

    /**
     * Moves complete records from the ring into the inbox until it is full or
     * the ring is empty, then decides whether input has ended.
     */
    const pump = (): void => {
      if (finished || inbox.isDone() || segmentDue !== undefined) return
      freed = false
      while (!inbox.isPaused()) {
        const record = inbound.next()
        if (record === undefined) break
        if (record instanceof IpcError.IpcError) return fail(new IpcError.IpcError({ ...fields(record), address }))
        if (record.kind === Ring.RecordKind.segment) {
          segmentDue = record
          break
        } else if (record.length >= inPlaceThreshold) {
          inbox.push(pinned(record))
        } else {
          const copy = Buffer.allocUnsafe(record.length)
          copy.set(inbound.payload(record))
          settle(record.end)
          inbox.push(copy)
        }
      }
      if (freed && inbound.takeWriterWaiting()) ring()
      if (segmentDue !== undefined) return kick()
      if (!inbox.isPaused() && !inbound.hasNext()) {
        if (inbound.isClosed()) {
          inbox.end()
          peerEnded(peerClosedError)
        } else if (peerDone !== undefined) {
          inbox.fail(peerDone)
        }
      }
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

    /** Before a receiver waits: read the ring, spin if asked to, and arm the doorbell if still empty. */
    const prepare = (): void => {
      if (inbox.size() > 0 || inbox.isDone() || finished) return
      pump()
      if (inbox.size() > 0 || inbox.isDone() || segmentDue !== undefined) return
      if (spinMillis > 0) {
        spinRead()
        if (inbox.size() > 0 || inbox.isDone() || segmentDue !== undefined) return
      }
      arm()
    }

    /** A message as `receive` returns it: a large one still in shared memory is copied and released. */
    const materialize = (message: Uint8Array): Uint8Array => {
      const lease = leases.get(message)
      if (lease === undefined) return message
      leases.delete(message)
      const copy = Buffer.allocUnsafe(message.byteLength)
      copy.set(message)
      lease()
      return copy
    }

    const takeRaw = inbox.take
    const pullRaw = inbox.pull
    const take: Inbox.Inbox["take"] = afterDoorbells(Effect.suspend(() => {
      prepare()
      return Effect.map(takeRaw, materialize)
    }))
    const pull: Inbox.Inbox["pull"] = afterDoorbells(Effect.suspend(() => {
      prepare()
      return Effect.map(
        pullRaw,
        (batch) => batch.map(materialize) as unknown as NonEmptyReadonlyArray<Uint8Array>
      )
    }))
    const receiveViewEffect: ShmChannel.ShmChannel["receiveView"] = afterDoorbells(Effect.suspend(() => {
      prepare()
      return Effect.flatMap(takeRaw, (message) => {
        const lease = leases.get(message)
        if (lease === undefined) return Effect.succeed(message)
        leases.delete(message)
        return Effect.as(Effect.addFinalizer(() => Effect.sync(lease)), message)
      })
    }))

    // ---- writing ------------------------------------------------------------------------
    const pending: Array<PendingSend> = []
    const sentSegments: Array<SentSegment> = []

    const afterWrite = (): void => {
      if (outbound.takeReaderWaiting()) ring()
    }

    /** Writes waiting sends in order while they fit; arms the writer flag if some still wait. */
    const flushPending = (): void => {
      let wrote = false
      while (pending.length > 0) {
        const next = pending[0]!
        if (!outbound.write(next.kind, next.payload)) break
        pending.shift()
        wrote = true
        noteSegmentEnd(next)
        next.resume(Effect.void)
      }
      if (wrote) afterWrite()
      if (pending.length > 0) {
        outbound.armWriter()
        if (outbound.fits(pending[0]!.payload.byteLength)) {
          outbound.disarmWriter()
          flushPending()
        }
      }
    }

    const noteSegmentEnd = (send: PendingSend): void => {
      if (send.kind !== Ring.RecordKind.segment) return
      const entry = sentSegments.find((s) => s.end === undefined)
      if (entry !== undefined) entry.end = outbound.position
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

    const sendFailure = (): IpcError.IpcError | undefined =>
      failure ?? (closing ? closedError : peerDone === undefined ? undefined : peerDone)

    const enqueue = (
      kind: Ring.RecordKind,
      payload: Uint8Array,
      onInterrupt: () => void
    ): Effect.Effect<void, IpcError.IpcError> => {
      if (pending.length === 0) {
        if (outbound.write(kind, payload) || (spinMillis > 0 && !unflushed && spinWrite(kind, payload))) {
          if (kind === Ring.RecordKind.segment) sentSegments[sentSegments.length - 1]!.end = outbound.position
          afterWrite()
          return Effect.void
        }
      }
      return Effect.callback<void, IpcError.IpcError>((resume) => {
        const entry: PendingSend = { kind, payload, resume }
        pending.push(entry)
        flushPending()
        return Effect.sync(() => {
          const i = pending.indexOf(entry)
          if (i >= 0) {
            pending.splice(i, 1)
            onInterrupt()
          }
        })
      })
    }

    /**
     * Puts a large message in a segment of its own; the ring carries its
     * name. From its creation the segment is on `sentSegments`, so that
     * closing the channel removes it if the peer never picks it up.
     */
    const sendLarge = (message: Uint8Array): Effect.Effect<void, IpcError.IpcError> =>
      Effect.flatMap(
        Effect.uninterruptible(
          Effect.map(
            Segments.createOutgoing("m", Header.HEADER_SIZE + message.byteLength, address),
            (mapped): SentSegment => {
              // the header first: from here on a collector can tell whose segment this is
              const header = Header.view(mapped.mapping.buffer)
              Header.initialise(header, {
                kind: Header.Kind.message,
                ttlMillis: 0,
                payloadLength: message.byteLength,
                createdAt: Date.now()
              })
              new Uint8Array(mapped.mapping.buffer, Header.HEADER_SIZE, message.byteLength).set(message)
              Header.publish(header)
              mapped.mapping.release()
              // segments the peer has read (it removes their names) are forgotten
              const readerAt = outbound.readerPosition()
              while (sentSegments.length > 0) {
                const first = sentSegments[0]!
                if (first.end === undefined || behind(readerAt, first.end)) break
                sentSegments.shift()!.segment.handedOver()
              }
              const entry: SentSegment = { segment: mapped, end: undefined }
              sentSegments.push(entry)
              return entry
            }
          )
        ),
        (entry) =>
          enqueue(Ring.RecordKind.segment, textEncoder.encode(entry.segment.token), () => {
            sentSegments.splice(sentSegments.indexOf(entry), 1)
            entry.segment.handedOver()
          })
      )

    const send = (message: Uint8Array): Effect.Effect<void, IpcError.IpcError> =>
      Effect.suspend(() => {
        const error = sendFailure()
        if (error !== undefined) return Effect.fail(error)
        if (message.byteLength > maxMessageSize) {
          return Effect.fail(IpcError.frameTooLarge(message.byteLength, maxMessageSize, address))
        }
        if (message.byteLength > inlineMax) return sendLarge(message)
        return enqueue(Ring.RecordKind.data, message, () => {})
      })

    // ---- lifecycle -------------------------------------------------------------------------
    const failPending = (error: IpcError.IpcError): void => {
      for (const entry of pending.splice(0)) entry.resume(Effect.fail(error))
    }

    /** The peer is gone (`error`: why); sends fail from now on. */
    function peerEnded(error: IpcError.IpcError): void {
      if (peerDone !== undefined) return
      peerDone = error
      failPending(error)
      Deferred.doneUnsafe(closed, Effect.void)
    }

    function fail(error: IpcError.IpcError): void {
      if (failure !== undefined || finished) return
      failure = error
      inbox.fail(error)
      failPending(error)
      Deferred.doneUnsafe(closed, Effect.void)
      // a protocol error from the peer: drop the link
      dropDue = true
      kick()
    }

    /**
     * Called on a doorbell, and when the inbox has room again. A doorbell finds
     * nothing when an earlier read took what it rang for; a receiver may still
     * be waiting then, so the flag is set again (a spare doorbell costs a
     * wake-up, a missing one a hang).
     */
    function wake(): void {
      if (finished) return
      pump()
      if (inbox.size() === 0 && !inbox.isDone()) arm()
      if (pending.length > 0) flushPending()
    }

    const onControlEnd = (error: IpcError.IpcError): void => {
      if (closing || finished) return
      peerEnded(
        error.reason._tag === "Closed" && inbound.isClosed()
          ? peerClosedError
          : IpcError.make("ConnectionLost", `the peer is gone: ${error.detail}`, address)
      )
      pump()
    }

    const task: Effect.Effect<void> = Effect.suspend(() => {
      if (dropDue) {
        dropDue = false
        return control.close
      }
      if (finished) return park
      if (doorbellDue) {
        doorbellDue = false
        // a failure to send shows up on the control channel's reader
        return Effect.ignore(control.send(WAKE))
      }
      return segmentDue === undefined ? park : takeSegment(segmentDue)
    })
    const park = Effect.callback<void>((resume) => {
      parked = resume
      return Effect.sync(() => {
        parked = undefined
      })
    })
    yield* Effect.forever(task, { disableYield: true }).pipe(
      // a defect would end the worker and with it every doorbell: fail the channel instead of stalling it
      Effect.catchDefect((defect) =>
        Effect.andThen(
          Effect.sync(() => fail(IpcError.make("Unknown", `the channel's worker stopped: ${String(defect)}`, address))),
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

    /** Lets go of the large messages in flight, waiting up to `linger` for the peer to pick them up. */
    const removeSentSegments = Effect.gen(function*() {
      const deadline = Date.now() + linger
      while (sentSegments.length > 0 && peerDone === undefined && !finished && Date.now() < deadline) {
        const last = sentSegments[sentSegments.length - 1]!
        if (last.end === undefined || !behind(outbound.readerPosition(), last.end)) break
        yield* Effect.sleep("5 millis")
      }
      for (const sent of sentSegments.splice(0)) sent.segment.handedOver()
    })

    const teardown = Effect.sync(() => {
      if (finished) return
      finished = true
      if (!inbox.isDone()) inbox.shutdown(failure ?? closedError)
      failPending(closedError)
      link.outbound.release()
      link.inbound.release()
      Deferred.doneUnsafe(closed, Effect.void)
    })

    /** Ends our side gracefully (the peer reads what we sent, then sees the end) and releases both rings. */
    const shutdown: Effect.Effect<void> = Effect.suspend(() => {
      if (closing || finished) return Effect.void
      closing = true
      inbox.shutdown(closedError)
      failPending(closedError)
      outbound.close()
      afterWrite()
      return removeSentSegments.pipe(
        Effect.andThen(control.close),
        Effect.ensuring(teardown)
      )
    })
    yield* Scope.addFinalizer(scope, shutdown)
    const close = Effect.andThen(shutdown, Scope.close(scope, Exit.void))

    const channel = IpcChannel.make({
      address,
      peer: link.peer,
      inbox: { ...inbox, take, pull },
      send,
      close,
      closed: Deferred.await(closed)
    })
    return {
      ...channel,
      [ShmChannel.TypeId]: ShmChannel.TypeId,
      receiveView: receiveViewEffect,
      stats: Effect.sync(() => ({ ...stats }))
    }
  })

const fields = (error: IpcError.IpcError) => ({ reason: error.reason._tag, detail: error.detail })

const reasonOf = (exit: Exit.Failure<unknown, IpcError.IpcError>): string => {
  const found = exit.cause.reasons.find((r) => r._tag === "Fail")
  return found !== undefined && found._tag === "Fail" ? found.error.detail : "unknown"
}
