/**
 * `Transport`: what listens and dials. `listen(address)` yields incoming
 * channels (a server with many clients), `dial(address)` yields one channel.
 * Every OS resource is scoped: closing the scope closes it, on success,
 * failure and interruption alike. A transport serves a set of address schemes;
 * `route` combines transports into one that picks by scheme.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Address from "./Address.ts"
import * as IpcChannel from "./IpcChannel.ts"
import * as IpcError from "./IpcError.ts"
import * as Observability from "./Observability.ts"
import * as TransportOptions from "./TransportOptions.ts"

/** A listening endpoint: the channels that peers open to it. */
export interface Listener {
  /** The address actually bound (a transport may resolve `pipe://name` to a path). */
  readonly address: string
  /** Waits for the next incoming channel; fails with reason `Closed` once the listener is closed. */
  readonly accept: Effect.Effect<IpcChannel.IpcChannel, IpcError.IpcError>
  /** The incoming channels, in the order they arrived. */
  readonly connections: Stream.Stream<IpcChannel.IpcChannel, IpcError.IpcError>
}

/** The operations of a transport. */
export interface TransportShape {
  /** The address schemes this transport serves (`unix`, `pipe`, ...). */
  readonly schemes: ReadonlyArray<string>
  /** Listens at `address`; the listener and every channel it accepted close with the scope. */
  readonly listen: (address: string) => Effect.Effect<Listener, IpcError.IpcError, Scope.Scope>
  /** Opens one channel to `address`; it closes with the scope. */
  readonly dial: (address: string) => Effect.Effect<IpcChannel.IpcChannel, IpcError.IpcError, Scope.Scope>
}

/** The `Transport` service. */
export class Transport extends Context.Service<Transport, TransportShape>()("@effect-ipc/core/Transport") {}

// transports whose operations are already instrumented, and the instrumented form of others
const instrumented = new WeakSet<TransportShape>()
const instrumentedOf = new WeakMap<TransportShape, TransportShape>()

/** Marks `shape` as instrumented already (its operations count and trace themselves). */
export const markInstrumented = (shape: TransportShape): TransportShape => {
  instrumented.add(shape)
  return shape
}

// an accepted channel, counted with the accepting fiber's services and traced as effect-ipc.accept
const accepted = (channel: IpcChannel.IpcChannel) =>
  Effect.contextWith((context: Context.Context<never>) =>
    Effect.succeed(Observability.instrumentChannel(channel, "accepted", context))
  ).pipe(
    Effect.withSpan(Observability.SpanNames.accept, {
      kind: "server",
      attributes: Observability.channelAttributes(channel)
    })
  )

const instrumentListener = (listener: Listener): Listener => ({
  address: listener.address,
  accept: Effect.flatMap(listener.accept, accepted),
  connections: Stream.mapEffect(listener.connections, accepted)
})

const observeFailure = (address: string) => (error: IpcError.IpcError) => Observability.recordError(address, error)

/** An operation's error with any secret of `address` removed (`Address.redactError`). */
const redacted = (address: string) => (error: IpcError.IpcError) => Address.redactError(error, address)

/**
 * A transport's `layer(options)`: `make(options)`, instrumented (`instrument`), as the `Transport` service, built
 * once `check` takes the options (by default `TransportOptions.layerOptionsOk`), so options no `listen` or `dial`
 * would take fail the build with `InvalidOption`.
 */
export const layerOf = <Options>(
  make: (options?: Options) => TransportShape,
  options?: Options,
  check: (options: unknown) => Effect.Effect<void, IpcError.IpcError> = TransportOptions.layerOptionsOk
): Layer.Layer<Transport, IpcError.IpcError> =>
  Layer.effect(Transport, Effect.map(check(options), () => instrument(make(options))))

/**
 * Adds effect-ipc's metrics and spans (see `Observability`) to a transport:
 * spans for listen, dial, accept and close; connections, messages, bytes, send
 * waits and errors counted per scheme. Idempotent: an instrumented transport
 * is returned as it is. `route` and `Registry.layerConfig` apply it. Spans
 * and errors show the address without its secrets (`Address.redact`).
 */
export const instrument = (transport: TransportShape): TransportShape => {
  if (instrumented.has(transport)) return transport
  const known = instrumentedOf.get(transport)
  if (known !== undefined) return known
  const shape: TransportShape = {
    schemes: transport.schemes,
    listen: (address) =>
      transport.listen(address).pipe(
        Effect.tap((listener) => Effect.annotateCurrentSpan("bound", Address.redact(listener.address))),
        Effect.tapError(observeFailure(address)),
        Effect.mapError(redacted(address)),
        Effect.map(instrumentListener),
        Effect.withSpan(Observability.SpanNames.listen, {
          attributes: { address: Address.redact(address), scheme: Observability.schemeOf(address) }
        })
      ),
    dial: (address) =>
      transport.dial(address).pipe(
        Effect.tapError(observeFailure(address)),
        Effect.mapError(redacted(address)),
        Effect.flatMap((channel) =>
          Effect.contextWith((context: Context.Context<never>) => {
            const observed = Observability.instrumentChannel(channel, "dialled", context)
            const peer = Observability.channelAttributes(channel)
            return Effect.as(
              Effect.andThen(
                Effect.annotateCurrentSpan(peer),
                // closing the dialling scope closes (and traces closing) the observed channel first
                Effect.addFinalizer(() => observed.close)
              ),
              observed
            )
          })
        ),
        Effect.withSpan(Observability.SpanNames.dial, {
          kind: "client",
          attributes: { address: Address.redact(address), scheme: Observability.schemeOf(address) }
        })
      )
  }
  instrumented.add(shape)
  instrumentedOf.set(transport, shape)
  return shape
}

/**
 * Combines transports into one that dispatches each address by its scheme.
 * Each transport is instrumented (see `instrument`).
 */
export const route = (transports: ReadonlyArray<TransportShape>): TransportShape => {
  const bySchemes = new Map<string, TransportShape>()
  for (const transport of transports) {
    const observed = instrument(transport)
    for (const scheme of transport.schemes) if (!bySchemes.has(scheme)) bySchemes.set(scheme, observed)
  }
  const schemes = [...bySchemes.keys()]
  const pick = (address: string) =>
    Effect.flatMap(Address.parse(address), (parsed) => {
      const transport = bySchemes.get(parsed.scheme)
      return transport === undefined
        ? Effect.fail(
          IpcError.make(
            "UnsupportedScheme",
            `no transport here serves ${parsed.scheme}:// (have ${schemes.join(", ")})`,
            Address.redact(address)
          )
        )
        : Effect.succeed(transport)
    })
  return markInstrumented({
    schemes,
    listen: (address) => Effect.flatMap(pick(address), (t) => t.listen(address)),
    dial: (address) => Effect.flatMap(pick(address), (t) => t.dial(address))
  })
}

/** Listens at `address` with the current `Transport`. */
export const listen = (address: string): Effect.Effect<Listener, IpcError.IpcError, Transport | Scope.Scope> =>
  Transport.use((t) => t.listen(address))

/** Dials `address` with the current `Transport`. */
export const dial = (
  address: string
): Effect.Effect<IpcChannel.IpcChannel, IpcError.IpcError, Transport | Scope.Scope> =>
  Transport.use((t) => t.dial(address))

/** A layer providing the `IpcChannel` service, dialled at `address` and closed with the layer. */
export const layerChannel = (address: string): Layer.Layer<IpcChannel.IpcChannel, IpcError.IpcError, Transport> =>
  Layer.effect(IpcChannel.IpcChannel, dial(address))

/**
 * Serves every channel that arrives at `listener` with `handler`, each in its
 * own fiber; the channel is closed when its handler ends. A failing handler
 * ends only its own connection (a peer's close silently, a lost peer logged at
 * debug level, anything else logged as a warning). Runs until interrupted.
 */
export const serve = <E, R>(
  listener: Listener,
  handler: (channel: IpcChannel.IpcChannel) => Effect.Effect<unknown, E, R>
): Effect.Effect<never, IpcError.IpcError, R | Scope.Scope> =>
  Effect.gen(function*() {
    const fibers = yield* FiberSet.make<unknown, never>()
    while (true) {
      const channel = yield* listener.accept
      yield* FiberSet.run(
        fibers,
        handler(channel).pipe(
          Effect.catchCause((cause) => {
            if (Cause.hasInterruptsOnly(cause)) return Effect.void
            const error = Cause.squash(cause)
            // a peer closing is the normal end of a connection; a lost peer is routine for a server
            if (IpcError.isIpcError(error)) {
              return error.reason._tag === "Closed" ? Effect.void : Effect.logDebug("connection ended", error)
            }
            return Effect.logWarning("connection handler failed", cause)
          }),
          Effect.ensuring(channel.close)
        )
      )
    }
  })

/**
 * Channels a listener holds that nobody has accepted yet, at most: past it a
 * new connection is closed as it comes (a listen backlog's overflow), so a
 * program that accepts slowly, or not at all, is not taken over by a flood.
 */
export const MAX_UNACCEPTED = 1024

/** Tools for transport authors: the accept queue of a listener. */
export interface Acceptor {
  /** The listener handed to users. */
  readonly listener: Listener
  /**
   * Offers an accepted channel to the listener's users (after `end`, it is
   * kept for `shutdown` to close); `false` once `shutdown` has run, or while
   * `maxUnaccepted` channels wait to be accepted: the caller closes it (or
   * use `admit`, which does).
   */
  readonly offer: (channel: IpcChannel.IpcChannel) => boolean
  /**
   * `offer`, and for a channel the listener cannot take, its close: one
   * refused because `maxUnaccepted` wait is reported (reason `Full`) to the
   * acceptor's `refused`. Succeeds with whether the listener took it.
   */
  readonly admit: (channel: IpcChannel.IpcChannel) => Effect.Effect<boolean>
  /**
   * Whether `maxUnaccepted` channels wait to be accepted (an offer now is refused), counting `coming`
   * more that the caller is opening and will offer (default 0).
   */
  readonly full: (coming?: number) => boolean
  /**
   * Ends the listener: pending and later accepts fail with reason `Closed`;
   * the channels offered and never accepted wait for `shutdown`.
   */
  readonly end: () => void
  /**
   * Ends the listener (as `end`) and closes the channels offered and never
   * accepted (nobody else will): run it as the listener's scope closes.
   */
  readonly shutdown: Effect.Effect<void>
}

/** How a listener's accept queue is bounded, and where its refusals go. */
export interface AcceptorOptions {
  /** Channels waiting to be accepted, at most (default `MAX_UNACCEPTED`). */
  readonly maxUnaccepted?: number | undefined
  /** Reports a channel refused for want of room (default: `Observability.refusals` of the address). */
  readonly refused?: ((error: IpcError.IpcError) => Effect.Effect<void>) | undefined
}

/** Makes the accept side of a listener (for transport authors); its refusals are logged until the scope closes. */
export const makeAcceptor = (
  address: string,
  options: AcceptorOptions = {}
): Effect.Effect<Acceptor, never, Scope.Scope> =>
  Effect.gen(function*() {
    const maxUnaccepted = options.maxUnaccepted ?? MAX_UNACCEPTED
    const queue = yield* Queue.dropping<IpcChannel.IpcChannel, Cause.Done>(maxUnaccepted)
    const refused = options.refused ?? (yield* Observability.refusals(address))
    const closedError = IpcError.make("Closed", "the listener is closed", address)
    const fullError = IpcError.make(
      "Full",
      `${maxUnaccepted} connections wait to be accepted: this one was closed (is the program accepting?)`,
      address
    )
    // offered and never accepted, once the listener ended: what holds them (a file channel's reader, a
    // socket) is let go only by their `close`
    let unaccepted: Array<IpcChannel.IpcChannel> | undefined
    let shut = false
    const end = (): void => {
      if (unaccepted !== undefined) return
      unaccepted = []
      for (let taken = Queue.takeUnsafe(queue); taken !== undefined && taken._tag === "Success";) {
        unaccepted.push(taken.value)
        taken = Queue.takeUnsafe(queue)
      }
      Queue.endUnsafe(queue)
    }
    const full = (coming = 0): boolean => unaccepted === undefined && Queue.sizeUnsafe(queue) + coming >= maxUnaccepted
    const offer = (channel: IpcChannel.IpcChannel): boolean => {
      if (shut) return false
      if (unaccepted === undefined) return Queue.offerUnsafe(queue, channel)
      unaccepted.push(channel)
      return true
    }
    return {
      listener: {
        address,
        accept: Effect.catchTag(Queue.take(queue), "Done", () => Effect.fail(closedError)),
        connections: Stream.fromQueue(queue)
      },
      offer,
      admit: (channel) =>
        Effect.suspend(() => {
          const wasFull = full()
          if (offer(channel)) return Effect.succeed(true)
          const closed = Effect.as(channel.close, false)
          return wasFull ? Effect.andThen(refused(fullError), closed) : closed
        }),
      full,
      end,
      shutdown: Effect.suspend(() => {
        end()
        shut = true
        const left = unaccepted!.splice(0)
        return Effect.forEach(left, (channel) => channel.close, { concurrency: "unbounded", discard: true })
      })
    }
  })
