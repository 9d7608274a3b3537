/**
 * A bounded receive buffer for transport authors. The transport pushes decoded
 * messages in as they arrive; when the buffer passes its high-water mark the
 * push answers `false` and the transport stops reading from its source until
 * `onResume` is called, so a slow consumer back-pressures the sender instead
 * of growing memory. Consumers take messages one at a time or all that are
 * buffered. The end of input is either graceful (`end`) or an error (`fail`);
 * both are delivered after every message already buffered.
 *
 * @since 0.1.0
 */
import type { NonEmptyReadonlyArray } from "effect/Array"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Taken from "./internal/taken.ts"
import * as IpcError from "./IpcError.ts"
import * as TransportOptions from "./TransportOptions.ts"

/** Limits of an inbox: it asks its source to pause above either of them. */
export interface InboxOptions {
  /** Buffered messages above which the source is paused (default 4096). */
  readonly maxMessages?: number | undefined
  /** Buffered bytes above which the source is paused (default 8 MiB). */
  readonly maxBytes?: number | undefined
  /** Called when a paused source may read again: once the taker that drained the inbox to half holds its take (it may push, or end, from here). */
  readonly onResume?: (() => void) | undefined
  /** The channel's address, named by the `Closed` a taker gets at a graceful end. */
  readonly address?: string | undefined
  /** The `Closed` a taker of one message gets at a graceful end (default: closed by its peer, naming `address`). */
  readonly closedError?: IpcError.IpcError | undefined
}

/** What a taker takes: one message (`take`), every buffered one (`pull`), or one as a batch of one (`next`). */
type Taking = "one" | "all" | "next"

type Result = Effect.Effect<unknown, IpcError.IpcError | Cause.Done>

/** A taker waiting: woken with `again`, its own take, which it then does as its fiber runs. */
interface Waiter {
  readonly resume: (result: Result) => void
  readonly again: Result
}

/** A bounded, back-pressuring buffer of received messages. */
export interface Inbox {
  /**
   * Adds a message; `false` means the source should pause until `onResume`.
   * After `shutdown` it drops the message and returns `true`: the source reads
   * on, so what the peer sends after (its goodbye) still arrives; past eight
   * times `maxBytes` dropped (a peer that floods), `false` for good.
   */
  readonly push: (message: Uint8Array) => boolean
  /**
   * Runs `deliver`, which pushes messages, and wakes a waiting taker once, as
   * it returns. Messages pushed outside it wake their taker in a microtask.
   */
  readonly deliver: <A>(deliver: () => A) => A
  /** Ends input gracefully after the buffered messages. */
  readonly end: () => void
  /** Ends input with an error after the buffered messages. */
  readonly fail: (error: IpcError.IpcError) => void
  /** Ends input now, dropping buffered messages (and later ones); takers fail with `error`; a paused source resumes. */
  readonly shutdown: (error: IpcError.IpcError) => void
  /** True once `end`, `fail` or `shutdown` was called. */
  readonly isDone: () => boolean
  /** True while the source is asked to pause. */
  readonly isPaused: () => boolean
  /** Messages buffered now (a transport that reads on demand looks here before waiting). */
  readonly size: () => number
  /** Takes one buffered message now, if there is one (for a transport's own receive, which looks before it waits). */
  readonly poll: () => Uint8Array | undefined
  /** Takes every buffered message now, if there is one. */
  readonly pollAll: () => NonEmptyReadonlyArray<Uint8Array> | undefined
  /** Takes every buffered message (at least one), or fails with `Cause.Done` at a graceful end. */
  readonly pull: Effect.Effect<NonEmptyReadonlyArray<Uint8Array>, IpcError.IpcError | Cause.Done>
  /** Takes one message; a graceful end fails with reason `Closed`. */
  readonly take: Effect.Effect<Uint8Array, IpcError.IpcError>
  /**
   * Takes one message, as a batch of one, or fails with `Cause.Done` at a
   * graceful end: the pull of a channel's `messages` stream, so that a
   * consumer that stops early (`Stream.take`, `runHead`) leaves the rest
   * buffered for the next reader.
   */
  readonly next: Effect.Effect<NonEmptyReadonlyArray<Uint8Array>, IpcError.IpcError | Cause.Done>
}

// after `shutdown`, at most this many inboxes' worth of bytes is read and dropped
const DROP_BUDGET_BUFFERS = 8

/**
 * `InvalidOption` for inbox options given in code that are not (`notAnObject`),
 * or whose `maxMessages` or `maxBytes` is not a whole number of at least 1
 * (`checkSizes`), or whose `onResume` is not a function, or `address` not a
 * string. Undefined when they are.
 */
const invalidOptions = (options: unknown): IpcError.IpcError | undefined => {
  const notObject = TransportOptions.notAnObject(options, "the inbox's options")
  if (notObject !== undefined || options === undefined) return notObject
  const given = options as InboxOptions
  const onResume: unknown = given.onResume
  const address: unknown = given.address
  return TransportOptions.checkSizes({ maxMessages: given.maxMessages, maxBytes: given.maxBytes }) ??
    (onResume === undefined || typeof onResume === "function"
      ? undefined
      : IpcError.make("InvalidOption", `onResume ${typeof onResume} is not a function`)) ??
    // the `Closed` a taker gets names it: one that is not a string threw from `make`
    (address === undefined || typeof address === "string"
      ? undefined
      : IpcError.make(
        "InvalidOption",
        `address (${TransportOptions.kindOf(address)}) is not a string`
      ))
}

/**
 * Makes an inbox. Options that are not (see `InboxOptions`: `null`, a
 * `maxMessages` of `"x"`) make one that has failed already: each take fails
 * with that `InvalidOption`, each push answers `false`.
 */
export const make = (options: InboxOptions = {}): Inbox => {
  const refused = invalidOptions(options)
  if (refused !== undefined) options = {}
  const maxMessages = options.maxMessages ?? 4096
  const maxBytes = options.maxBytes ?? 8 * 1024 * 1024
  const closedError = options.closedError ?? IpcError.closedByPeer(options.address)
  let items: Array<Uint8Array> = []
  let head = 0
  let bytes = 0
  let paused = false
  let done = refused !== undefined
  // shut down: what arrives is dropped as it comes, up to a budget (what a peer had on its way as we closed,
  // not a flood without end: past it the source pauses for good)
  let dropping = false
  let dropBudget = DROP_BUDGET_BUFFERS * maxBytes
  let error: IpcError.IpcError | undefined = refused
  const waiters: Array<Waiter> = []
  // told of every take (see `internal/taken.ts`): the channel's metrics
  let observer: Taken.Observer | undefined

  const available = () => items.length - head

  const takeBuffered = (): NonEmptyReadonlyArray<Uint8Array> => {
    const out = (head === 0 ? items : items.slice(head)) as unknown as NonEmptyReadonlyArray<Uint8Array>
    observer?.taken(out.length, bytes)
    items = []
    head = 0
    bytes = 0
    return out
  }

  const takeOne = (): Uint8Array => {
    const item = items[head]!
    items[head] = undefined as unknown as Uint8Array
    head++
    bytes -= item.byteLength
    observer?.taken(1, item.byteLength)
    if (head === items.length) {
      items = []
      head = 0
    } else if (head > 1024 && head * 2 > items.length) {
      items = items.slice(head)
      head = 0
    }
    return item
  }

  // Called once a taker holds what it took, never between the take and the hand-over: a source may
  // push, and end the input, from `onResume` (shm's reads its ring there), which wakes takers itself.
  // While `wake` hands a waiter its take it does nothing: `wake` calls it once the taker holds it
  let handing = 0
  const resumeIfBelow = () => {
    if (handing === 0 && paused && available() <= maxMessages / 2 && bytes <= maxBytes / 2) {
      paused = false
      options.onResume?.()
    }
  }

  // A take that did not wait asks the source to resume once its fiber has gone on with the message, in a
  // microtask: from inside the take, a source that delivers or ends from `onResume` woke a waiting taker
  // first, and where that taker was the first one's partner in `Effect.race` it won and the message the
  // first one held was dropped
  let resumeScheduled = false
  const resumeLater = () => {
    resumeScheduled = false
    resumeIfBelow()
  }
  const resumeSoon = () => {
    if (resumeScheduled || !paused) return
    resumeScheduled = true
    queueMicrotask(resumeLater)
  }

  /** What a taker of one message gets once input has ended and nothing is left: `Closed`, or the error. */
  const endedOne = (): Effect.Effect<never, IpcError.IpcError> => {
    const failure = error ?? closedError
    observer?.failed(failure)
    return Effect.fail(failure)
  }
  /**
   * What a taker of the rest gets then: `Cause.Done`, or the error. The channel's `receiveAll` takes the
   * end as `Closed` (and so does the observer), its `messages` as the stream's end.
   */
  const ended = (taking: "all" | "next"): Effect.Effect<never, IpcError.IpcError | Cause.Done> => {
    if (error !== undefined) {
      observer?.failed(error)
      return Effect.fail(error)
    }
    if (taking === "all") observer?.failed(closedError)
    return Effect.fail(Cause.Done())
  }

  /** What a taker (of one message, or of all) gets now; `undefined` while it must wait. */
  const ready = (
    taking: Taking
  ): Effect.Effect<never, IpcError.IpcError | Cause.Done> | Effect.Effect<unknown> | undefined =>
    available() > 0
      ? Effect.succeed(taking === "one" ? takeOne() : taking === "all" ? takeBuffered() : [takeOne()])
      : done
      ? taking === "one" ? endedOne() : ended(taking)
      : undefined

  // A waiter is handed its own take to run, not what it is to get: a taker that was interrupted while it
  // waited (its resume does nothing now) takes nothing, and the next one is woken for what is left.
  // Waiting so, with no finalizer to remove the waiter when it is interrupted, spares each receive that
  // waits the finalizer effect installs and runs (90 of a receive's 430 ns, in one process).
  const wake = () => {
    while (waiters.length > 0 && (done || available() > 0)) handOver(waiters.shift()!)
  }
  // The taker's take runs inside `resume`, and the fiber goes on with what it took before `resume`
  // returns: the source is asked to resume (see `resumeIfBelow`) after that, not from inside the take,
  // where a source that ends or delivers from `onResume` woke the next taker first (with
  // `Effect.race(receive, receive)` the second won and the first one's message was dropped)
  const handOver = (waiter: Waiter): void => {
    handing++
    try {
      waiter.resume(waiter.again)
    } finally {
      handing--
    }
    resumeIfBelow()
  }

  let wakeScheduled = false
  const scheduledWake = () => {
    wakeScheduled = false
    wake()
  }
  // inside `deliver`: pushes leave the wake to its end
  let delivering = 0
  let wakeHeld = false

  // Interrupted waiters stay listed until a wake or this sweep passes them: while nothing arrives, a
  // waiter list twice as long as it was after the last sweep is woken as a whole (in a microtask, outside
  // the fiber registering), each live taker finding nothing and waiting again, so that takers
  // interrupted while the channel is quiet (a receive under a timeout, in a loop) are not held on to.
  let sweepAt = 16
  let sweepScheduled = false
  const sweep = () => {
    sweepScheduled = false
    const swept = waiters.splice(0)
    for (const waiter of swept) handOver(waiter)
    sweepAt = Math.max(16, waiters.length * 2)
  }

  // The fiber may yield to the event loop between a take's look at the buffer and its wait (effect
  // yields every so many steps): a message pushed meanwhile found no waiter to wake. So a waiter
  // looks again as it registers, where nothing can come between (unless others wait before it).
  const wait = <A, E>(taking: Taking, again: () => Result) =>
    Effect.callback<A, E>((resume) => {
      const now = waiters.length === 0 ? ready(taking) : undefined
      if (now !== undefined) {
        ;(resume as Waiter["resume"])(now)
        return resumeIfBelow()
      }
      waiters.push({ resume: resume as Waiter["resume"], again: again() })
      if (waiters.length >= sweepAt && !sweepScheduled) {
        sweepScheduled = true
        queueMicrotask(sweep)
      }
    })

  const poll = (): Uint8Array | undefined => {
    if (available() === 0) return undefined
    const message = takeOne()
    resumeSoon()
    return message
  }
  const pollAll = (): NonEmptyReadonlyArray<Uint8Array> | undefined => {
    if (available() === 0) return undefined
    const batch = takeBuffered()
    resumeSoon()
    return batch
  }

  const pullWaiting = wait<NonEmptyReadonlyArray<Uint8Array>, IpcError.IpcError | Cause.Done>("all", () => pull)
  const pull: Inbox["pull"] = Effect.suspend(() => {
    const batch = pollAll()
    if (batch !== undefined) return Effect.succeed(batch)
    if (done) return ended("all")
    return pullWaiting
  })

  const nextWaiting = wait<NonEmptyReadonlyArray<Uint8Array>, IpcError.IpcError | Cause.Done>("next", () => next)
  const next: Effect.Effect<NonEmptyReadonlyArray<Uint8Array>, IpcError.IpcError | Cause.Done> = Effect.suspend(() => {
    const message = poll()
    if (message !== undefined) return Effect.succeed([message])
    if (done) return ended("next")
    return nextWaiting
  })

  const takeWaiting = wait<Uint8Array, IpcError.IpcError>("one", () => take)
  const take: Inbox["take"] = Effect.suspend(() => {
    const message = poll()
    if (message !== undefined) return Effect.succeed(message)
    if (done) return endedOne()
    return takeWaiting
  })

  const inbox: Inbox = {
    push(message) {
      if (done) {
        if (!dropping || dropBudget <= 0) return false
        dropBudget -= message.byteLength
        return true
      }
      items.push(message)
      bytes += message.byteLength
      // wake once per burst: a chunk that decodes into many messages resumes its reader once
      if (waiters.length > 0) {
        if (delivering > 0) {
          wakeHeld = true
        } else if (!wakeScheduled) {
          wakeScheduled = true
          queueMicrotask(scheduledWake)
        }
      }
      if (available() >= maxMessages || bytes >= maxBytes) paused = true
      return !paused
    },
    deliver(deliver) {
      delivering++
      try {
        return deliver()
      } finally {
        // the taker runs now, in the source's callback, as it would have in the microtask after it
        if (--delivering === 0 && wakeHeld) {
          wakeHeld = false
          wake()
        }
      }
    },
    end() {
      if (done) return
      done = true
      wake()
    },
    fail(e) {
      if (done) return
      done = true
      error = e
      wake()
    },
    shutdown(e) {
      items = []
      head = 0
      bytes = 0
      if (!done || error === undefined) error = e
      done = true
      dropping = true
      wake()
      // nobody will take what is still to come: let it in (and drop it), so that the peer's goodbye behind it arrives
      if (paused) {
        paused = false
        options.onResume?.()
      }
    },
    isDone: () => done,
    isPaused: () => paused,
    size: available,
    poll,
    pollAll,
    pull,
    take,
    next
  }
  Taken.registerInbox(inbox, (taking) => {
    if (observer !== undefined) return observer.into === taking.into
    observer = taking
    return true
  })
  return inbox
}
