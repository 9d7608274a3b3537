/**
 * One end of a file channel: a directory holding two log streams
 * (`backend_to_frontend`, `frontend_to_backend`) and a lock file per role.
 * An endpoint holds its role's lock for as long as it is open (so the other
 * side can tell it is alive), appends to its outgoing stream and reads its
 * incoming stream as reader `<role>`, committing its cursor as messages are
 * taken.
 *
 * Wake-ups come from `fs.watch` on the incoming stream; a slow timer
 * (`livenessInterval`, 250 ms by default) checks the peer's lock and reads
 * anything a missed notification left behind. A peer that disappears
 * without its close record is `ConnectionLost`, after every whole record it
 * wrote has been delivered; a torn last record (the peer died mid-write) is
 * never delivered.
 *
 * The channel's lifecycle (send checks, goodbye, failure, the inbox) is
 * core's `ChannelEngine`; an endpoint is its link, and keeps the commits.
 *
 * @internal
 */
import * as ChannelEngine from "@effect-ipc/core/ChannelEngine"
import type * as Inbox from "@effect-ipc/core/Inbox"
import * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Observability from "@effect-ipc/core/Observability"
import type { NonEmptyReadonlyArray } from "effect/Array"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Log from "../Log.ts"
import * as LogFormat from "../LogFormat.ts"
import * as Lock from "./lock.ts"
import * as Sys from "./sys.ts"
import * as Wake from "./wake.ts"

/** The two fixed roles of a channel directory (ipckit's naming). */
export const ROLES = ["backend", "frontend"] as const

/** A fixed role. */
export type Role = typeof ROLES[number]

/** The other role. */
export const peerOf = (role: Role): Role => role === "backend" ? "frontend" : "backend"

/** The stream a role writes to. */
export const outgoing = (role: Role): string => role === "backend" ? "backend_to_frontend" : "frontend_to_backend"

/** The file name of a role's lock, which its end holds while it is open. */
export const lockName = (role: Role): string => `${role}.lock`

/** The paths of a channel directory. */
export const channelPaths = (dir: string) => ({
  dir,
  lock: (role: Role) => Path.join(dir, lockName(role)),
  stream: (from: Role) => Path.join(dir, outgoing(from))
})

/** Options of a channel endpoint. */
export interface EndpointOptions extends Log.LogOptions {
  /** Largest message `send` accepts (default 32 MiB, or what fits in a smaller `maxBytes`). */
  readonly maxMessageSize?: number | undefined
  /** Received messages buffered in memory before reading pauses (default 4096). */
  readonly maxBufferedMessages?: number | undefined
  /** Received bytes buffered in memory before reading pauses (default 8 MiB). */
  readonly maxBufferedBytes?: number | undefined
  /** How often the peer's liveness is checked (default 250 ms). */
  readonly livenessInterval?: Duration.Input | undefined
  /** A corrupt record: fail the channel with `Corrupt` (default), or log it and skip to the next valid record. */
  readonly onCorrupt?: "fail" | "skip" | undefined
  /**
   * Fixed roles only: when the other side's process dies without closing,
   * fail with `ConnectionLost` (default) or wait for it to come back.
   */
  readonly peerLoss?: "fail" | "wait" | undefined
}

const utf8 = new TextDecoder()
/** The session a close record names (its payload: a lock word's token, short), if it names one. */
const sessionOf = (payload: Uint8Array): string | undefined =>
  payload.byteLength > 0 && payload.byteLength <= LogFormat.CLOSE_PAYLOAD_MAX ? utf8.decode(payload) : undefined

/** Default largest message. */
export const DEFAULT_MAX_MESSAGE_SIZE = 32 * 1024 * 1024

/** What the endpoint knows of its peer right now. */
export type PeerStatus = "present" | "pending" | "absent"

/** What opening an endpoint needs. */
export interface EndpointSpec {
  readonly address: string
  readonly dir: string
  readonly role: Role
  /** Where the peer stands: `present` (its lock is held), `pending` (not there yet, may come), `absent` (gone). */
  readonly peerStatus: (seenBefore: boolean) => PeerStatus | IpcError.IpcError
  /** Called once the endpoint has let go of everything (connection clean-up). */
  readonly onReleased?: (() => void) | undefined
  /** How long to retry taking the role's lock while a prober holds it (default 200 ms). */
  readonly lockRetry?: Duration.Input | undefined
  /** The role's lock, when the caller took it already (a dialer takes it before publishing the connection). */
  readonly heldLock?: Lock.HeldLock | undefined
  /**
   * Take the role's lock once the streams are open, not before (a listener's accept: its dialer, watching that
   * lock, never sees an accept that failed for want of descriptors). Only for a role nobody else opens.
   */
  readonly lockLast?: boolean | undefined
  /**
   * A durable channel (the fixed roles) outlives its peer's sessions: the
   * peer's close record says it left cleanly, and the channel waits for its
   * next session instead of ending. Otherwise (connections) the peer's close
   * ends the channel, as a socket's would.
   */
  readonly durable?: boolean | undefined
}

/** A received record that has not been committed yet. */
export interface Delivery {
  readonly payload: Uint8Array
  /** The offset to commit once this message is handled. */
  readonly end: number
}

/** An open endpoint. */
export interface Endpoint {
  /** The channel; its receives commit the cursor as they take messages. */
  readonly channel: IpcChannel.IpcChannel
  /** Takes every buffered message with its offset, without committing (for `commit` by hand). */
  readonly pullDeliveries: Effect.Effect<NonEmptyReadonlyArray<Delivery>, IpcError.IpcError | Cause.Done>
  /** Commits the cursor up to `end` (monotonic). */
  readonly commit: (end: number) => void
  /** Completes once the endpoint holds nothing (its reader too): what a listener waits for before forgetting it. */
  readonly letGo: Effect.Effect<void>
}

/** Where a fixed role's peer stands: present while its lock is held; once seen and gone, absent. */
export const rolePeer = (dir: string, role: Role) => (seenBefore: boolean): PeerStatus | IpcError.IpcError => {
  const state = Lock.probe(channelPaths(dir).lock(peerOf(role)))
  if (Sys.failed(state)) return state
  return state === "held" ? "present" : seenBefore ? "absent" : "pending"
}

/** Takes the role's lock; a prober (a peer checking our liveness) holds it for microseconds, so retried briefly. */
const takeRoleLock = (spec: EndpointSpec, mode: number): Effect.Effect<Lock.HeldLock, IpcError.IpcError> => {
  const path = channelPaths(spec.dir).lock(spec.role)
  const attempt = Effect.suspend(() => {
    const taken = Lock.tryTake(path, mode, Lock.sessionOwner(process.pid), spec.address)
    if (Sys.failed(taken)) return Effect.fail(taken)
    if (taken !== "busy") return Effect.succeed(taken)
    const owner = Lock.session(path)
    const where = owner === undefined
      ? "in another process"
      : Lock.isHeldHere(owner)
      ? "already in this process"
      : `in another process (pid ${owner.pid})`
    return Effect.fail(
      IpcError.make("AddressInUse", `the ${spec.role} end of this channel is open ${where}`, spec.address)
    )
  })
  return Lock.retryWhileProbed(attempt, spec.lockRetry)
}

/** The largest record payload a stream capped at `options.maxBytes` can take (two records and segment headers aside). */
const roomIn = (options: EndpointOptions): number =>
  (options.maxBytes ?? Log.defaults.maxBytes) - 2 * LogFormat.RECORD_HEADER - 2 * LogFormat.SEGMENT_HEADER

/**
 * `InvalidOption` when a stream capped at `maxBytes` can hold no message (its headers take it all), or less than
 * `maxMessageSize`.
 */
export const optionsFit = (options: EndpointOptions, address?: string): Effect.Effect<void, IpcError.IpcError> =>
  Effect.suspend(() => {
    const room = roomIn(options)
    const maxBytes = options.maxBytes ?? Log.defaults.maxBytes
    if (room < 1) {
      return Effect.fail(IpcError.make(
        "InvalidOption",
        `maxBytes ${maxBytes} leaves no room for a message (a stream's headers take ${maxBytes - room} bytes)`,
        address
      ))
    }
    if (options.maxMessageSize === undefined || options.maxMessageSize <= room) return Effect.void
    return Effect.fail(IpcError.make(
      "InvalidOption",
      `maxMessageSize ${options.maxMessageSize} must leave room in maxBytes ${
        options.maxBytes ?? Log.defaults.maxBytes
      } (at most ${room})`,
      address
    ))
  })

/** Opens an endpoint of the channel directory in `spec` (its streams must exist). Not scoped: close it. */
export const open = (
  spec: EndpointSpec,
  options: EndpointOptions = {}
): Effect.Effect<Endpoint, IpcError.IpcError> =>
  Effect.gen(function*() {
    const address = spec.address
    yield* optionsFit(options, address)
    const maxMessageSize = options.maxMessageSize ?? Math.min(DEFAULT_MAX_MESSAGE_SIZE, roomIn(options))
    const livenessMs = Duration.toMillis(Duration.fromInputUnsafe(options.livenessInterval ?? "250 millis"))
    const paths = channelPaths(spec.dir)
    const role = spec.role
    const peerRole = peerOf(role)

    // the lock, the writer and the watcher live in `scope`, closed when the endpoint lets go; the
    // reader lives in `readerScope`, closed by `close`, so buffered messages still commit as taken
    const scope = yield* Scope.make()
    const readerScope = yield* Scope.make()
    // the role's lock if this open took it: an open that fails takes back the token it wrote there, or the peer
    // would take that token for a session that opened and died unseen (`unseenSession`), and report it lost
    let tookLock: Lock.HeldLock | undefined
    const unsayToken = () => tookLock !== undefined && Lock.clearOwner(tookLock)
    const openAll = Effect.gen(function*() {
      const takeLock = Effect.tap(
        takeRoleLock(spec, options.fileMode ?? Log.defaults.fileMode),
        (lock) => Effect.sync(() => tookLock = lock)
      )
      // let go of last, whenever it is taken
      let roleLock = spec.heldLock
      yield* Scope.addFinalizer(scope, Effect.sync(() => roleLock !== undefined && Lock.release(roleLock)))
      if (spec.lockLast !== true) roleLock ??= yield* takeLock
      const writer = yield* Log.openWriter(paths.stream(role), options).pipe(Scope.provide(scope))
      const reader = yield* Log.openReader(paths.stream(peerRole), { name: role, from: "start", ...options }).pipe(
        Scope.provide(readerScope)
      )
      roleLock ??= yield* takeLock
      return { writer, reader, session: Lock.tokenOf(roleLock.owner) }
    })
    const opened = yield* Effect.exit(openAll)
    if (Exit.isFailure(opened)) {
      unsayToken()
      yield* Scope.close(readerScope, opened)
      yield* Scope.close(scope, opened)
      return yield* Effect.failCause(opened.cause)
    }
    const { writer, reader, session } = opened.value
    // our close record names this session (its lock word's token): see `closedSession`
    const closeRecord = new TextEncoder().encode(session)
    // work started by the event loop (watcher, timers) runs here, with the services of whoever
    // opened the endpoint (their logger, tracer); `close` interrupts what is left
    const tasks = yield* Scope.make()
    const background = yield* FiberSet.makeRuntime<never>().pipe(Scope.provide(tasks))

    // the lifecycle (send checks, goodbye, failure, the inbox) is core's `ChannelEngine`; this is
    // the link: appends, the pump with its cursor bookkeeping, the close record and liveness
    let sink!: ChannelEngine.Sink
    // completes once the endpoint has let go of its lock, writer and watcher
    const released = Deferred.makeUnsafe<void>()
    // completes once the reader went too
    const readerGone = Deferred.makeUnsafe<void>()
    let releasing = false
    let closing = false // our close record is on its way (or the endpoint let go)
    let goodbyeFiber: Fiber.Fiber<void> | undefined
    let peerSeen = false
    // the token of the peer's session whose close record we read last, as the record names it: a liveness check
    // may find that session's lock still held a moment after its close record, which is no new session (a record
    // that names none, from an older writer: any session holding the lock then is a new one)
    let closedSession: string | undefined
    // the token of the peer's session a liveness check last found holding its lock (durable channels): a close
    // record that names another session is an earlier one's, read late (behind a paused inbox), and the one seen
    // is still watched
    let seenSession: string | undefined
    // the token in the peer's lock file of a session this end knows of: the one there as it opened (which may have
    // left before, its close record read by an earlier session), one a check saw, one whose close record named none
    // (an older writer's). A token there that is none of these, nor the closed session's, is a session that opened
    // and went between two liveness checks (see `unseenSession`)
    let knownSession: string | undefined
    let peerPid: number | undefined
    // the last liveness check could not look at the peer's lock (warned once until one can)
    const probeFailing = Observability.spell()
    // the last read found no descriptor free (a segment to open): read again on the next wake-up or check, the
    // peer's loss not judged meanwhile (warned once until a read goes through)
    const starved = Observability.spell()
    // with `onCorrupt: "skip"`, the reader stands after a corrupt record with nothing valid after it yet
    const damaged = Observability.spell()
    let paused = false
    let largePending = false
    let pumpScheduled = false
    // offsets of the messages in the inbox, in order, for commits
    let ends: Array<number> = []
    let endsHead = 0
    let closeEnd: number | undefined
    // where that close record starts (the end of the last message before it)
    let closeStart: number | undefined
    // the end of the last message handed out and not committed yet (see `hand`)
    let handed: number | undefined

    const readPeerPid = () => {
      if (peerPid === undefined) peerPid = Lock.session(paths.lock(peerRole))?.pid
    }
    const peer: IpcChannel.PeerInfo = {
      get pid() {
        readPeerPid()
        return peerPid
      },
      description: `${peerRole} of ${spec.dir}`
    }

    // a failure after our goodbye is not one: the close record is on its way
    const fail = (error: IpcError.IpcError): void => {
      if (!closing) sink.lost(error)
    }

    // ---- reading --------------------------------------------------------------------------
    const deliver = (entries: ReadonlyArray<Log.Entry>): void => {
      for (const entry of entries) {
        if (entry.kind === LogFormat.Kind.close && spec.durable) {
          // the peer left cleanly: not a loss; wait for its next session (unless a later one was seen already)
          const named = sessionOf(entry.payload)
          if (named === undefined || seenSession === undefined || named === seenSession) {
            peerSeen = false
            peerPid = undefined
            seenSession = undefined
          }
          closedSession = named
          // a record that names no session (an older writer's) closes the one whose token the lock file holds now
          if (named === undefined) knownSession = lockToken()
          if (endsHead === ends.length && handed === undefined) reader.commit(entry.end)
          continue
        }
        if (entry.kind === LogFormat.Kind.close) {
          closeEnd = entry.end
          closeStart = entry.end - LogFormat.RECORD_HEADER - entry.payload.byteLength
          if (endsHead === ends.length && handed === undefined) reader.commit(entry.end)
          // the peer is done: the engine ends the input (keeping what it sent for the reader) and answers
          sink.peerClosed()
          return
        }
        // a message since the peer's last close record: a session of its own, even one that came and died
        // between two liveness checks (or before this end opened), whose loss is then reported, not waited out
        if (spec.durable) {
          peerSeen = true
          closedSession = undefined
        }
        ends.push(entry.end)
        if (!sink.message(entry.payload)) paused = true
      }
    }

    /** A read that failed: for want of room, tried again later (nothing is lost); otherwise the channel fails. */
    const unread = (error: IpcError.IpcError): void => {
      if (error.reason._tag !== "NoSpace") return fail(error)
      background(starved.begin("cannot read the peer's messages for want of room; trying again", error.detail))
    }

    const corrupt = (error: IpcError.IpcError): boolean => {
      if (options.onCorrupt === "skip") {
        const skipped = reader.skipCorrupt()
        if (Sys.failed(skipped)) {
          unread(skipped)
          return false
        }
        // nothing valid after it yet: read again on the next wake-up or check (warned once), never at once
        if (skipped === 0) {
          background(damaged.begin("a corrupt record with nothing valid after it yet; waiting for more", error.detail))
          return false
        }
        damaged.end()
        background(Effect.logWarning(`skipped ${skipped} bytes of a corrupt record`, error.detail))
        return true
      }
      fail(error)
      return false
    }

    // true once nothing more is read: the input ended, the endpoint let go, or the channel is closing
    const stopped = () => releasing || closeEnd !== undefined || sink.isEnding()

    function pump(): void {
      if (stopped() || largePending || paused) return
      let budget = 4 * 1024 * 1024
      while (true) {
        const result = reader.poll(Math.min(budget, 1024 * 1024))
        if (Sys.failed(result)) return unread(result)
        if (result._tag !== "Short") starved.end()
        deliver(result.entries)
        if (stopped()) return
        for (const e of result.entries) budget -= e.payload.byteLength + LogFormat.RECORD_HEADER
        switch (result._tag) {
          case "Idle":
            return
          case "Corrupt":
            if (!corrupt(result.error)) return
            break
          case "Short":
            return unread(result.error)
          case "Large":
            largePending = true
            return reader.readLarge((entry) => {
              largePending = false
              if (releasing) return
              if (Sys.failed(entry)) return unread(entry)
              if (entry !== undefined) deliver([entry])
              pump()
            })
          case "More":
            break
        }
        if (paused) return
        if (budget <= 0) {
          // a long backlog: let the event loop breathe between slices
          if (!pumpScheduled) {
            pumpScheduled = true
            setImmediate(() => {
              pumpScheduled = false
              pump()
            })
          }
          return
        }
      }
    }

    // ---- liveness ---------------------------------------------------------------------------
    // only a session's own text, whole, is read as one: damage to the lock file names no session
    const lockToken = (): string | undefined => {
      const owner = Lock.session(paths.lock(peerRole))
      return owner?.checked === true ? owner.token : undefined
    }
    /**
     * The peer's lock is free and no session of it was seen: whether its lock file names a session this end does not
     * know of, which opened and went between two checks (killed before it sent anything, or before it was seen); if
     * so it counts as seen, and its close record (read before its lock was let go) says whether it left cleanly.
     */
    const unseenSession = (): boolean => {
      const owner = Lock.session(paths.lock(peerRole))
      const token = owner?.checked === true ? owner.token : undefined
      // no session ever opened (a reader started before its writer), a remover's moment, or a damaged lock file
      if (token === undefined) return false
      if (token === knownSession || token === closedSession) return false
      // read before a second look at the lock: a session that took it meanwhile is seen there, not taken for gone
      const again = spec.peerStatus(false)
      // a look that failed (no descriptor free, the lock file replaced) tells nothing: judged on a later check
      if (Sys.failed(again)) return false
      if (again === "present") {
        present()
        return false
      }
      knownSession = token
      seenSession = token
      peerSeen = true
      peerPid = owner?.pid
      return true
    }
    /** The peer's lock is held (at open, or on a check): a session of the peer's, seen, unless it is not one. */
    const present = (): void => {
      const text = spec.durable ? Lock.ownerText(paths.lock(peerRole)) : undefined
      // an empty lock file: a side between taking the lock and writing its text (seen at the next check), or one
      // whose open failed and emptied it before letting go (no session: its going is no loss)
      if (text === "") return
      const owner = text === undefined ? undefined : Lock.sessionOf(text)
      const holder = owner?.token
      // a remover trying the lock for a moment (`FileChannel.remove` in another process) is no session
      if (holder === Lock.REMOVER) return
      // the session that closed, still letting go of its lock: not seen again (nor one whose text is damaged: a new
      // session writes its own text as it takes the lock)
      if (closedSession !== undefined && (holder === closedSession || owner?.shaped !== true)) return
      closedSession = undefined
      // a session of unknown token when its text is damaged (or an older writer's): no close record is matched to it
      const checked = owner?.checked === true ? owner : undefined
      seenSession = checked?.token
      knownSession = checked?.token
      peerSeen = true
      peerPid ??= checked?.pid
      readPeerPid()
    }
    const tick = () => {
      pump()
      if (stopped()) return
      const status = spec.peerStatus(peerSeen)
      if (Sys.failed(status)) {
        // the peer's lock cannot be looked at (replaced by a symlink, made unreadable):
        // its loss cannot be told, which is said once for each spell of it
        background(probeFailing.begin(
          `cannot tell whether the ${peerRole} is alive (${status.detail}): its loss is not reported while this lasts`
        ))
        return
      }
      probeFailing.end()
      if (status === "present") return present()
      if (status === "pending" && !(spec.durable && unseenSession())) return
      // gone: deliver every whole record it wrote before saying so (a backlog read in slices included: its
      // close record may be in a slice still to come)
      if (paused || largePending || pumpScheduled) return
      pump()
      if (paused || largePending || pumpScheduled || starved.active() || stopped()) return
      // its close record was among them: it left cleanly (a durable channel waits for it)
      if (spec.durable && !peerSeen) return
      if (spec.durable && options.peerLoss === "wait") {
        peerSeen = false
        peerPid = undefined
        return
      }
      const torn = reader.pendingBytes()
      fail(
        IpcError.make(
          "ConnectionLost",
          torn > 0
            ? `the peer died in the middle of a write (a torn record of ${torn} bytes was discarded)`
            : "the peer process is gone without closing the channel",
          address
        )
      )
    }

    // ---- letting go -------------------------------------------------------------------------
    let timer: ReturnType<typeof setInterval> | undefined
    // the reader's cursor stays open until `close`: messages still buffered commit as they are taken
    const release = (): void => {
      if (releasing) return
      releasing = true
      closing = true
      if (timer !== undefined) clearInterval(timer)
      // a close record still waiting (the engine's linger ran out) is given up
      const unsaid = goodbyeFiber
      goodbyeFiber = undefined
      background(
        (unsaid === undefined ? Effect.void : Fiber.interrupt(unsaid)).pipe(
          Effect.andThen(Scope.close(scope, Exit.void)),
          Effect.andThen(Effect.sync(() => {
            spec.onReleased?.()
            Deferred.doneUnsafe(released, Effect.void)
            sink.closed()
            letReaderGo()
          }))
        )
      )
    }

    const link: ChannelEngine.Link = {
      write: (message) => {
        const aborted = sink.aborted
        return writer.append(message, { abort: aborted })
      },
      pending: () => 0,
      resume: () => {
        paused = false
        pump()
      },
      // our side's goodbye: a close record, then let go of everything
      goodbye: (sent) => {
        if (closing) return
        closing = true
        goodbyeFiber = background(
          writer.append(closeRecord, { kind: LogFormat.Kind.close }).pipe(
            // (a full disk): the peer will see us gone, not closed; `closeChecked` says so
            Effect.catch((error) =>
              Effect.sync(() =>
                sink.lost(
                  IpcError.make(
                    "ConnectionLost",
                    `the close record could not be written (${error.message}): the peer sees the channel lost, not closed`,
                    address
                  )
                )
              )
            ),
            Effect.andThen(Effect.sync(() => {
              goodbyeFiber = undefined
              sent()
              release()
            }))
          )
        )
      },
      destroy: release
    }

    const engine = ChannelEngine.make({
      address,
      peer,
      maxMessageSize,
      maxBufferedMessages: options.maxBufferedMessages,
      maxBufferedBytes: options.maxBufferedBytes
    }, (given) => {
      sink = given
      return link
    })

    const closedErr = IpcError.make("Closed", "the channel is closed", address)
    const close = IpcChannel.extendClose(engine.channel.close, (inner) =>
      Effect.suspend(() => {
        commitHanded()
        // what nobody took is dropped (and not committed), even after the peer's close or a failure; an inbox
        // still open the engine's close shuts down itself, once it knows it closes (nothing is read after)
        if (engine.inbox.isDone()) engine.inbox.shutdown(closedErr)
        return inner.pipe(
          Effect.andThen(Deferred.await(released)),
          Effect.ensuring(Effect.andThen(closeReader, Scope.close(tasks, Exit.void)))
        )
      }))

    // ---- commits ------------------------------------------------------------------------------
    const consumed = (n: number): Array<number> => {
      const taken = ends.slice(endsHead, endsHead + n)
      endsHead += n
      if (endsHead === ends.length) {
        ends = []
        endsHead = 0
      } else if (endsHead > 4096 && endsHead * 2 > ends.length) {
        ends = ends.slice(endsHead)
        endsHead = 0
      }
      return taken
    }
    // a message counts as handled once its taker asks for the next one, or closes the channel:
    // a process killed while handling a message gets it again (at least once), and a clean
    // restart neither repeats nor skips
    const commit = (end: number): void => {
      const error = reader.commit(end)
      if (error !== undefined) background(Effect.logWarning("cannot commit the cursor", error))
      // past the close record once everything before it is handled
      if (closeEnd !== undefined && closeStart !== undefined && endsHead === ends.length && end >= closeStart) {
        reader.commit(closeEnd)
      }
    }
    const commitHanded = () => {
      if (handed === undefined) return
      const end = handed
      handed = undefined
      commit(end)
    }
    const closeReader = Effect.andThen(Scope.close(readerScope, Exit.void), Deferred.succeed(readerGone, undefined))
    // a connection (not durable) that ended without its user's `close` keeps no descriptors: its reader goes as the
    // endpoint lets go. Nobody opens a connection's streams again, so its cursor has nothing left to keep: what
    // it delivered stays for its user in memory (a durable channel's cursor is its next session's: its user
    // commits as it takes, and closes it)
    function letReaderGo(): void {
      if (spec.durable) return
      commitHanded()
      background(closeReader)
    }
    const hand = (n: number) => {
      const taken = consumed(n)
      handed = taken[taken.length - 1]
    }

    const inbox = engine.inbox
    const tracked: Inbox.Inbox = {
      ...inbox,
      poll: () => {
        commitHanded()
        const message = inbox.poll()
        if (message !== undefined) hand(1)
        return message
      },
      pollAll: () => {
        commitHanded()
        const batch = inbox.pollAll()
        if (batch !== undefined) hand(batch.length)
        return batch
      },
      take: Effect.suspend(() => {
        commitHanded()
        return Effect.tap(inbox.take, () => Effect.sync(() => hand(1)))
      }),
      pull: Effect.suspend(() => {
        commitHanded()
        return Effect.tap(inbox.pull, (batch) => Effect.sync(() => hand(batch.length)))
      }),
      next: Effect.suspend(() => {
        commitHanded()
        return Effect.tap(inbox.next, () => Effect.sync(() => hand(1)))
      })
    }
    const pullDeliveries: Endpoint["pullDeliveries"] = Effect.map(inbox.pull, (batch) => {
      const offsets = consumed(batch.length)
      return batch.map((payload, i) => ({ payload, end: offsets[i]! })) as unknown as NonEmptyReadonlyArray<Delivery>
    })

    // ---- start ------------------------------------------------------------------------------
    // the token is read first: a session that opens (and goes) after it is one this end did not know of
    const tokenAtOpen = spec.durable ? lockToken() : undefined
    if (spec.peerStatus(false) === "present") present()
    else knownSession = tokenAtOpen
    yield* Wake.watch(paths.stream(peerRole), pump, options).pipe(
      Scope.provide(scope),
      Effect.tapError((error) =>
        Effect.andThen(
          Effect.sync(() => {
            unsayToken()
            engine.fail(error)
          }),
          close
        )
      )
    )
    timer = setInterval(tick, livenessMs)
    timer.unref()
    for (const repair of writer.takeRepairs()) yield* Effect.logWarning(repair)
    pump()

    const channel = IpcChannel.make({
      address,
      peer,
      inbox: tracked,
      send: engine.channel.send,
      sendAll: engine.channel.sendAll,
      close,
      // the engine has finished, and the endpoint has let go of everything
      closed: Effect.andThen(engine.channel.closed, Deferred.await(released))
    })
    return { channel, pullDeliveries, commit, letGo: Deferred.await(readerGone) }
  })

/** Removes a channel directory whose two ends are both gone. */
export const removeIfAbandoned = (dir: string): void => {
  const paths = channelPaths(dir)
  for (const role of ROLES) {
    const state = Lock.probe(paths.lock(role))
    if (state === "held" || Sys.failed(state)) return
  }
  try {
    Fs.rmSync(dir, { recursive: true, force: true })
  } catch {
    // someone else removed it, or it is in use again
  }
}
