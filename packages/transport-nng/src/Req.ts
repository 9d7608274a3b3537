/**
 * The requesting side of nng's request/reply pattern, as a pool of nng req0
 * sockets. Each socket has its own connections (its own dialers) and carries
 * one request at a time; the pool starts with `pool.min` sockets, opens
 * another whenever a request finds them all busy, up to `pool.max`, and hands
 * each request to the idle socket that has served the fewest, so the load
 * spreads evenly over the connections (and, when several addresses are
 * dialled, over the servers: nng balances each socket's requests over its
 * connected peers).
 *
 * Links are nng's: dialers connect in the background and reconnect with
 * nng's backoff (`reconnect.min` doubling up to `reconnect.max`). nng's own
 * resending of requests is turned off (`req:resend-time` infinite), so a
 * request is never replayed behind the caller's back: a request in flight
 * when its connection drops fails with reason `ConnectionLost` (it may or may
 * not have been handled), and one without a reply in `timeout` fails with
 * `Timeout`; only a request marked `idempotent` is then tried again, with the
 * `retry` schedule (core's `Policy.retry` by default).
 *
 * @since 0.1.0
 */
import * as Address from "@effect-ipc/core/Address"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Policy from "@effect-ipc/core/Policy"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import type * as Endpoints from "./Endpoints.ts"
import * as Opening from "./internal/endpoints.ts"
import * as Nng from "./internal/nng.ts"
import type * as Socket from "./internal/socket.ts"
import * as Ticker from "./internal/ticker.ts"
import * as NngError from "./NngError.ts"

/** Options of a requester. */
export interface RequesterOptions extends Endpoints.EndpointsOptions {
  /** Sockets in the pool: `min` open at once, more while all are busy, up to `max` (default 1 and 8). */
  readonly pool?: { readonly min?: number | undefined; readonly max?: number | undefined } | undefined
  /** How long one attempt may take, waiting for a connection included (default 30 s). */
  readonly timeout?: Duration.Input | undefined
  /** How idempotent requests are retried after a lost connection or a timeout (default `Policy.retry(5)`). */
  readonly retry?: Schedule.Schedule<unknown> | undefined
}

/** Options of one request. */
export interface RequestOptions {
  /** Safe to repeat: retried (with the requester's `retry` schedule) after a lost connection or a timeout. */
  readonly idempotent?: boolean | undefined
  /** How long one attempt may take (default: the requester's `timeout`). */
  readonly timeout?: Duration.Input | undefined
}

/** A request waiting for a socket of the pool. */
interface Waiter {
  /** Woken: a socket came free (or may be opened) for it. */
  woken: boolean
  wake: () => void
}

/** A pool of request sockets. */
export interface RequesterShape {
  /** Sends a request and waits for its reply. */
  readonly request: (body: Uint8Array, options?: RequestOptions) => Effect.Effect<Uint8Array, IpcError.IpcError>
  /** How many sockets the pool has opened. */
  readonly size: Effect.Effect<number>
  /** How many requests each socket of the pool has carried, in the order they were opened. */
  readonly load: Effect.Effect<ReadonlyArray<number>>
}

/** The `Requester` service. */
export class Requester extends Context.Service<Requester, RequesterShape>()("@effect-ipc/transport-nng/Requester") {}

const list = (value: string | ReadonlyArray<string> | undefined): ReadonlyArray<string> =>
  value === undefined ? [] : typeof value === "string" ? [value] : value

interface Member {
  readonly socket: Socket.Socket
  readonly dialers: Opening.Opened["dialers"]
  served: number
  busy: boolean
}

/** Where one try got to: the socket it holds, and whether its request went out to a peer. */
interface Progress {
  member: Member | undefined
  sent: boolean
}

/** Why `member`'s dialers have not connected, from nng's statistics: ` (connection refused)`, or "" when they do not say. */
const dialFailures = (member: Member): string => {
  const nng = member.socket.nng
  const failures: Array<{ readonly address: string; readonly why: string }> = []
  for (const { address, dialer } of member.dialers) {
    const code = nng.dialerFailure(dialer)
    if (code === undefined) continue
    const message = nng.message(code)
    failures.push({ address: Address.redact(address), why: message.charAt(0).toLowerCase() + message.slice(1) })
  }
  if (failures.length === 0) return ""
  // the address is said only where several were dialled
  const whys = member.dialers.length === 1 ? [failures[0]!.why] : failures.map((f) => `${f.address}: ${f.why}`)
  return ` (${whys.join("; ")})`
}

/** Whether nng's statistics list a live connection of `member`'s socket (false when they do not say). */
const peerConnected = (member: Member): boolean => {
  const nng = member.socket.nng
  const pipes = nng.socketPipes(member.socket.handle)
  return pipes !== undefined && pipes.some(({ pipe }) => nng.pipeAlive(pipe))
}

/** Waits until the reply is there, or the connection it was sent on is gone. */
const awaitReply = (socket: Socket.Socket): Effect.Effect<Uint8Array, IpcError.IpcError> =>
  Effect.suspend(() => {
    const received = socket.tryReceive()
    if (typeof received !== "number") return Effect.succeed(received.body)
    if (received !== Nng.EAGAIN) {
      return Effect.fail(
        received === NngError.Code.ECONNRESET
          ? socket.error(
            received,
            "the connection dropped with the request in flight (it may or may not have been handled)"
          )
          : socket.error(received, "no reply")
      )
    }
    // nng raises recv-fd for a reply, but not for a dropped connection: look again on every tick too
    return Effect.andThen(
      Effect.callback<void>((resume) => {
        const wake = () => {
          stopReadable()
          stopTicks()
          resume(Effect.void)
        }
        const stopReadable = socket.onReadable(wake)
        const stopTicks = Ticker.every(wake)
        return Effect.sync(() => {
          stopReadable()
          stopTicks()
        })
      }),
      awaitReply(socket)
    )
  })

/** `InvalidOption` for a pool whose `min` is over its `max` (core's `checkSizes` checks each is a whole number of at least 1). */
const poolError = (pool: RequesterOptions["pool"]): IpcError.IpcError | undefined =>
  pool?.min !== undefined && pool.max !== undefined && pool.min > pool.max
    ? IpcError.make("InvalidOption", `pool.min ${pool.min} is more than pool.max ${pool.max}`)
    : undefined

/** Makes a requester; its sockets close with the scope. */
export const make = (options: RequesterOptions): Effect.Effect<RequesterShape, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    // the pool's and the timeout's checks (the sockets' own come as each is opened)
    const refused = TransportOptions.notAnObject(options, "the socket's options") ??
      TransportOptions.checkSizes({ pool: options.pool }) ?? poolError(options.pool) ??
      TransportOptions.checkDurations({ timeout: options.timeout })
    if (refused !== undefined) return yield* refused
    const min = options.pool?.min ?? 1
    const max = options.pool?.max ?? Math.max(min, 8)
    const timeout = Duration.fromInputUnsafe(options.timeout ?? "30 seconds")
    const retry = options.retry ?? Policy.retry(5)
    const scope = yield* Effect.scope
    const members: Array<Member> = []
    /** Requests waiting for a socket, in order: each freed socket wakes the first (waking all cost each one a look). */
    const waiters: Array<Waiter> = []
    let opening = 0

    // `busy`: opened for a request, and its from the start (marked after it joined the pool, a request that
    // looked in between could take it too: two requests on one req socket, the first's reply lost)
    const openMember = (busy: boolean) =>
      Effect.gen(function*() {
        const { dialers, socket } = yield* Opening.open("req", options)
        // never resend: a request is replayed only when the caller said it is idempotent
        yield* socket.setOption("req:resend-time", { ms: Nng.INFINITE })
        const member: Member = { socket, dialers, served: 0, busy }
        members.push(member)
        return member
      }).pipe(Scope.provide(scope))

    for (let i = 0; i < min; i++) yield* openMember(false)

    const mayProceed = () => members.length + opening < max || members.some((member) => !member.busy)
    // a woken waiter runs at once, within the wake: one whose request fails at once frees its socket and wakes the
    // next inside it, and so on down the queue (20 000 waiters overflowed the stack); those wakes are taken in turn
    let waking = false
    let wakesDue = 0
    /** Wakes the first waiter, if a socket is free or may be opened: it looks again. */
    const wakeOne = () => {
      wakesDue++
      if (waking) return
      waking = true
      try {
        while (wakesDue > 0) {
          wakesDue--
          if (mayProceed()) waiters.shift()?.wake()
        }
      } finally {
        waking = false
      }
    }

    const release = (member: Member) =>
      Effect.sync(() => {
        member.busy = false
        wakeOne()
      })

    /**
     * An idle socket (the least used), a new one while the pool may grow, or the first to come free (`front`: a
     * waiter woken that lost the socket to a newcomer waits first again).
     */
    const acquire = (front: boolean): Effect.Effect<Member, IpcError.IpcError> =>
      Effect.suspend(() => {
        let best: Member | undefined
        for (const member of members) {
          if (!member.busy && (best === undefined || member.served < best.served)) best = member
        }
        if (best !== undefined) {
          best.busy = true
          return Effect.succeed(best)
        }
        if (members.length + opening < max) {
          opening++
          return openMember(true).pipe(
            // a socket that could not be opened leaves room for another: a waiter looks again
            Effect.ensuring(Effect.sync(() => {
              opening--
              wakeOne()
            }))
          )
        }
        const waiter: Waiter = { woken: false, wake: () => {} }
        return Effect.callback<void>((resume) => {
          // effect may yield between the look above and this wait: a socket freed meanwhile woke nobody
          if (mayProceed()) return resume(Effect.void)
          waiter.wake = () => {
            waiter.woken = true
            resume(Effect.void)
          }
          if (front) waiters.unshift(waiter)
          else waiters.push(waiter)
          return Effect.sync(() => {
            const i = waiters.indexOf(waiter)
            if (i >= 0) waiters.splice(i, 1)
          })
        }).pipe(
          Effect.andThen(Effect.suspend(() => acquire(waiter.woken))),
          // a waiter woken and interrupted before it took the socket hands its turn on
          Effect.onInterrupt(() => Effect.sync(() => waiter.woken && wakeOne()))
        )
      })

    const addresses = [...list(options.dial), ...list(options.listen)]
    const where = addresses.join(", ")
    // as a detail is shown: without an address's secret (`ws://...?token=`)
    const shownWhere = addresses.map(Address.redact).join(", ")
    const exchange = (member: Member, body: Uint8Array, progress: Progress) =>
      Effect.gen(function*() {
        member.served++
        // a req socket takes a request only once a peer is connected: until then the send waits
        yield* member.socket.send(body)
        progress.sent = true
        return yield* awaitReply(member.socket)
      })

    /** The `Timeout` of a try: no reply to a request sent, a peer that took none, or no peer (and why, if nng says). */
    const timedOut = (progress: Progress, limit: Duration.Duration) =>
      IpcError.make(
        "Timeout",
        progress.member === undefined
          // every socket the pool had open was taken by an earlier request (being sent, or waiting for its reply)
          ? `every socket of the pool (${members.length} open) was busy with an earlier request for ${
            Duration.format(limit)
          }: this one was not sent`
          : progress.sent
          ? `no reply within ${Duration.format(limit)}`
          // a connected peer that has not read the requests sent before takes no more: it was told "no peer connected"
          : peerConnected(progress.member)
          ? `a peer is connected to ${shownWhere} but took no request within ${
            Duration.format(limit)
          } (it has not read those sent before)`
          : `no peer connected to ${shownWhere} within ${Duration.format(limit)}${dialFailures(progress.member)}`,
        where
      )

    /** One try: a socket (waiting for one if need be), the request, its reply, all within `limit`. */
    const attempt = (body: Uint8Array, limit: Duration.Duration) =>
      Effect.suspend(() => {
        const progress: Progress = { member: undefined, sent: false }
        return Effect.uninterruptibleMask((restore) =>
          Effect.flatMap(
            restore(acquire(false)),
            (member) => {
              progress.member = member
              return restore(exchange(member, body, progress)).pipe(Effect.ensuring(release(member)))
            }
          )
        ).pipe(
          Effect.timeoutOrElse({
            duration: limit,
            orElse: () => Effect.fail(timedOut(progress, limit))
          })
        )
      })

    const request = (body: Uint8Array, requestOptions: RequestOptions = {}) => {
      const refusedTimeout = TransportOptions.checkDurations({ timeout: requestOptions.timeout })
      if (refusedTimeout !== undefined) return Effect.fail(refusedTimeout)
      const limit = requestOptions.timeout === undefined ? timeout : Duration.fromInputUnsafe(requestOptions.timeout)
      const once = attempt(body, limit)
      return requestOptions.idempotent === true
        ? Effect.retry(once, {
          schedule: retry,
          while: (error) => error.reason._tag === "ConnectionLost" || error.reason._tag === "Timeout"
        })
        : once
    }

    return {
      request,
      size: Effect.sync(() => members.length),
      load: Effect.sync(() => members.map((member) => member.served))
    }
  })

/** The `Requester` service, closed with the layer. */
export const layer = (options: RequesterOptions): Layer.Layer<Requester, IpcError.IpcError> =>
  Layer.effect(Requester, make(options))
