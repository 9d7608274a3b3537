/**
 * Metrics and spans of effect-ipc, for every transport alike. They are added
 * in one place, `Transport.instrument`, which `Transport.route` and
 * `Registry.layerConfig` apply; a transport only reports what the core cannot
 * see (a connection its listener refused) with `refused`.
 *
 * Every metric carries the attribute `transport` (the address scheme: `unix`,
 * `memory`, ...): connections dialled, accepted and refused; messages and
 * bytes in and out; the time a `send` waited (milliseconds); errors by
 * `reason`. Spans: `effect-ipc.listen`, `effect-ipc.dial`,
 * `effect-ipc.accept`, `effect-ipc.close` with the attributes `address`,
 * `scheme` and, where the transport knows them, `peer.pid` / `peer.uid`.
 *
 * Counting a message costs a counter update and no fiber: the metrics of a
 * channel are looked up once, when it is dialled or accepted, with the
 * services of the fiber that dialled or accepted it.
 *
 * @since 0.1.0
 */
import type { NonEmptyReadonlyArray } from "effect/Array"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Predicate from "effect/Predicate"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Address from "./Address.ts"
import * as Bytes from "./internal/bytes.ts"
import * as Eager from "./internal/eager.ts"
import * as Taken from "./internal/taken.ts"
import * as IpcChannel from "./IpcChannel.ts"
import * as IpcError from "./IpcError.ts"

/** The names of the metrics (each with the attribute `transport`; errors also with `reason`). */
export const MetricNames = {
  /** Counter: channels opened by `dial`. */
  dialled: "effect_ipc_connections_dialled",
  /** Counter: channels handed over by a listener (`accept` / `connections`). */
  accepted: "effect_ipc_connections_accepted",
  /** Counter: connections refused (`PeerRejected` on dial, or dropped by a listener's policy). */
  refused: "effect_ipc_connections_refused",
  /** Counter: messages received. */
  messagesIn: "effect_ipc_messages_in",
  /** Counter: messages sent. */
  messagesOut: "effect_ipc_messages_out",
  /** Counter: payload bytes received. */
  bytesIn: "effect_ipc_bytes_in",
  /** Counter: payload bytes sent. */
  bytesOut: "effect_ipc_bytes_out",
  /** Histogram (milliseconds): how long each `send` took to be accepted by the transport. */
  sendWait: "effect_ipc_send_wait_ms",
  /** Counter: failed operations, with the attribute `reason` (the `IpcError` reason). */
  errors: "effect_ipc_errors"
} as const

/** The names of the spans. */
export const SpanNames = {
  listen: "effect-ipc.listen",
  dial: "effect-ipc.dial",
  accept: "effect-ipc.accept",
  close: "effect-ipc.close"
} as const

/** The metrics of one transport scheme. */
interface SchemeMetrics {
  readonly scheme: string
  readonly dialled: Metric.Counter<number>
  readonly accepted: Metric.Counter<number>
  readonly refused: Metric.Counter<number>
  readonly messagesIn: Metric.Counter<number>
  readonly messagesOut: Metric.Counter<number>
  readonly bytesIn: Metric.Counter<number>
  readonly bytesOut: Metric.Counter<number>
  readonly sendWait: Metric.Histogram<number>
  readonly errors: Map<string, Metric.Counter<number>>
}

const sendWaitBoundaries = Metric.exponentialBoundaries({ start: 0.01, factor: 4, count: 12 })

const byScheme = new Map<string, SchemeMetrics>()

/**
 * The scheme of an address (`unix` for `unix:///x` and `unix:@x`), without
 * parsing the rest; `unknown` when it has none or is not a plain scheme name.
 */
export const schemeOf = (address: string): string => {
  if (typeof address !== "string") return "unknown"
  const colon = address.indexOf(":")
  // a scheme is read without regard to case (`MEMORY://x` is memory://)
  const scheme = colon > 0 ? address.slice(0, colon).toLowerCase() : ""
  return /^[a-z][a-z0-9+.-]{0,31}$/.test(scheme) ? scheme : "unknown"
}

/** Metric series are kept per scheme: past this many schemes (addresses from untrusted input), `other`. */
const MAX_SCHEMES = 64

const metricsOf = (named: string): SchemeMetrics => {
  const scheme = byScheme.has(named) || byScheme.size < MAX_SCHEMES ? named : "other"
  let metrics = byScheme.get(scheme)
  if (metrics === undefined) {
    const attributes = { transport: scheme }
    const counter = (name: string, description: string) =>
      Metric.counter(name, { description, attributes, incremental: true })
    metrics = {
      scheme,
      dialled: counter(MetricNames.dialled, "channels opened by dial"),
      accepted: counter(MetricNames.accepted, "channels accepted by a listener"),
      refused: counter(MetricNames.refused, "connections refused by policy"),
      messagesIn: counter(MetricNames.messagesIn, "messages received"),
      messagesOut: counter(MetricNames.messagesOut, "messages sent"),
      bytesIn: counter(MetricNames.bytesIn, "payload bytes received"),
      bytesOut: counter(MetricNames.bytesOut, "payload bytes sent"),
      sendWait: Metric.histogram(MetricNames.sendWait, {
        description: "time a send waited for the transport (milliseconds)",
        attributes,
        boundaries: sendWaitBoundaries
      }),
      errors: new Map()
    }
    byScheme.set(scheme, metrics)
  }
  return metrics
}

/** The reason of an `IpcError` as a string (tagged reasons by their tag). */
const reasonOf = (error: IpcError.IpcError): string => {
  const reason: unknown = error.reason
  if (typeof reason === "string") return reason
  if (Predicate.hasProperty(reason, "_tag") && typeof reason._tag === "string") return reason._tag
  return "Unknown"
}

const errorCounter = (metrics: SchemeMetrics, reason: string): Metric.Counter<number> => {
  let counter = metrics.errors.get(reason)
  if (counter === undefined) {
    counter = Metric.counter(MetricNames.errors, {
      description: "failed operations by reason",
      attributes: { transport: metrics.scheme, reason },
      incremental: true
    })
    metrics.errors.set(reason, counter)
  }
  return counter
}

const countError = (metrics: SchemeMetrics, error: unknown, context: Context.Context<never>): void => {
  if (!IpcError.isIpcError(error)) return
  const reason = reasonOf(error)
  errorCounter(metrics, reason).updateUnsafe(1, context)
  if (reason === "PeerRejected") metrics.refused.updateUnsafe(1, context)
}

/** Counts a failed operation at `address` (errors by reason; `PeerRejected` is also a refusal). */
export const recordError = (address: string, error: IpcError.IpcError): Effect.Effect<void> =>
  Effect.contextWith((context: Context.Context<never>) => {
    countError(metricsOf(schemeOf(address)), error, context)
    return Effect.void
  })

/**
 * For transport authors: a listener refused or dropped a connection by its
 * policy (`error`, usually reason `PeerRejected`). Counts it and logs it as a
 * warning (its address, and `address` in its detail, redacted), with the
 * services of the calling fiber.
 */
export const refused = (address: string, error: IpcError.IpcError): Effect.Effect<void> =>
  Effect.andThen(
    recordError(address, error),
    Effect.suspend(() => Effect.logWarning("refused a connection", Address.redactError(error, address)))
  )

/** How many refusals a minute `refusals` logs one by one. */
export const LOGGED_REFUSALS_PER_MINUTE = 10

/**
 * For transport authors: `refused` for a listener's refusals, its logging
 * bounded. Every refusal is counted; the first 10 of each minute are logged
 * one by one as warnings, and the rest summed up in one warning a minute
 * (and as the scope closes), so that a flood of refused peers writes a few
 * lines a minute, not one per connection. The summary names the address of
 * the latest refusal (so a listener of port 0, made before it was bound, its
 * port).
 */
export const refusals = (
  address: string
): Effect.Effect<(error: IpcError.IpcError) => Effect.Effect<void>, never, Scope.Scope> =>
  Effect.gen(function*() {
    // the address the refusals name (a listener of port 0 is made before its port is known)
    let shown = Address.redact(address)
    let loggedThisMinute = 0
    let unlogged = 0
    const logUnlogged = Effect.suspend(() => {
      const count = unlogged
      unlogged = 0
      return count === 0
        ? Effect.void
        : Effect.logWarning(`${count} more refused in the last minute at ${shown} (not logged one by one)`)
    })
    yield* Effect.forkScoped(
      Effect.forever(
        Effect.andThen(
          Effect.sleep(Duration.minutes(1)),
          Effect.suspend(() => {
            loggedThisMinute = 0
            return logUnlogged
          })
        )
      )
    )
    yield* Effect.addFinalizer(() => logUnlogged)
    return (error) =>
      Effect.andThen(
        recordError(address, error),
        Effect.suspend(() => {
          if (error.address !== undefined) shown = Address.redact(error.address)
          if (loggedThisMinute < LOGGED_REFUSALS_PER_MINUTE) {
            loggedThisMinute++
            return Effect.logWarning("refused a connection", Address.redactError(error, address))
          }
          unlogged++
          return Effect.void
        })
      )
  })

/** A condition that lasts a while, logged once as each spell of it begins (see `spell`). */
export interface Spell {
  /** The warning as a spell begins; `Effect.void` while one is under way. */
  readonly begin: (message: string, cause?: unknown) => Effect.Effect<void>
  /** Ends the spell (the next `begin` warns again); whether one was under way. */
  readonly end: () => boolean
  /** Whether a spell is under way. */
  readonly active: () => boolean
}

/**
 * For transport authors: one warning per spell of a condition tried again
 * and again (no room to read, a lock that cannot be looked at), not one per
 * try. `begin` decides at once, so calls made before its warning runs are
 * not logged twice.
 */
export const spell = (): Spell => {
  let under = false
  return {
    begin: (message, cause) => {
      if (under) return Effect.void
      under = true
      return cause === undefined ? Effect.logWarning(message) : Effect.logWarning(message, cause)
    },
    end: () => {
      const was = under
      under = false
      return was
    },
    active: () => under
  }
}

/** The span attributes of a channel: address, scheme, and the peer's pid / uid where known. */
export const channelAttributes = (channel: IpcChannel.IpcChannel): Record<string, unknown> => {
  const attributes: Record<string, unknown> = {
    address: Address.redact(channel.address),
    scheme: schemeOf(channel.address)
  }
  if (channel.peer.pid !== undefined) attributes["peer.pid"] = channel.peer.pid
  if (channel.peer.uid !== undefined) attributes["peer.uid"] = channel.peer.uid
  return attributes
}

/** A message's size; what is not bytes (JavaScript may pass anything) is refused by the channel, not thrown here. */
const sizeOf = (message: Uint8Array): number => ArrayBuffer.isView(message) ? message.byteLength : 0

/** Messages and bytes in and out of the channels that count into one series of each traffic metric. */
interface Traffic {
  messagesIn: number
  bytesIn: number
  messagesOut: number
  bytesOut: number
}

// per registry, per series (its merged attributes, as effect identifies a series): the totals its four
// traffic metrics report. Kept as long as the registry is.
const trafficByRegistry = new WeakMap<Metric.MetricRegistry, Map<string, Traffic>>()

// the totals whose series answered the last read (how `trafficOf` sees that its series are still in place)
let answered: Traffic | undefined

const counterOf = (traffic: Traffic, count: (traffic: Traffic) => number) => ({
  get: (): Metric.CounterState<number> => {
    answered = traffic
    return { count: count(traffic), incremental: true }
  },
  update: () => {},
  modify: () => {}
})

const trafficCounters: ReadonlyArray<readonly [keyof Traffic, (metrics: SchemeMetrics) => Metric.Counter<number>]> = [
  ["messagesIn", (metrics) => metrics.messagesIn],
  ["bytesIn", (metrics) => metrics.bytesIn],
  ["messagesOut", (metrics) => metrics.messagesOut],
  ["bytesOut", (metrics) => metrics.bytesOut]
]

/**
 * The totals of `series` (`seriesOf`), which a channel opened with `context`
 * counts its traffic into. The four traffic counters of that series are registered with hooks that read
 * them (`Metric.registerUnsafe`): a message costs two additions, where an
 * update looked its series up in the registry. Looked up once per channel;
 * a series removed from the registry (or replaced) since is registered
 * again, from zero, as an updated counter would start again, and the
 * channels open count on into it.
 */
const trafficOf = (
  metrics: SchemeMetrics,
  context: Context.Context<never>,
  { known, traffic }: Series
): Traffic => {
  for (const [field, metric] of trafficCounters) {
    if (known !== undefined) {
      answered = undefined
      metric(metrics).valueUnsafe(context)
      if (answered === known) continue
      // its series gone: the channels counting into it go on counting, into the series registered now
      traffic[field] = 0
    }
    Metric.registerUnsafe(metric(metrics), context, counterOf(traffic, (totals) => totals[field]))
  }
  return traffic
}

/** A series' totals, and whether they were there already. */
interface Series {
  readonly known: Traffic | undefined
  readonly traffic: Traffic
}

/**
 * The totals of the series `context` counts `metrics` into (its registry and
 * attributes): the one already there (`known`), or a new one.
 */
const seriesOf = (metrics: SchemeMetrics, context: Context.Context<never>): Series => {
  const registry = Context.get(context, Metric.MetricRegistry)
  const attributes: Record<string, string> = {
    transport: metrics.scheme,
    ...Context.get(context, Metric.CurrentMetricAttributes)
  }
  const key = JSON.stringify(Object.entries(attributes).toSorted(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
  let series = trafficByRegistry.get(registry)
  if (series === undefined) {
    series = new Map()
    trafficByRegistry.set(registry, series)
  }
  const known = series.get(key)
  const traffic = known ?? { messagesIn: 0, bytesIn: 0, messagesOut: 0, bytesOut: 0 }
  if (known === undefined) series.set(key, traffic)
  return { known, traffic }
}

/** effect 4.0.0 to 4.0.5 have no `Metric.registerUnsafe`: there a channel's totals are added to the counters. */
const hooksAvailable: boolean = typeof (Metric as Partial<typeof Metric>).registerUnsafe === "function"

/**
 * Without `Metric.registerUnsafe`: a channel's own totals, added to its
 * counters once per burst (in a microtask, `published` schedules it) and
 * zeroed.
 */
const publishedPerBurst = (
  metrics: SchemeMetrics,
  context: Context.Context<never>
): { readonly traffic: Traffic; readonly published: () => void } => {
  const traffic: Traffic = { messagesIn: 0, bytesIn: 0, messagesOut: 0, bytesOut: 0 }
  let scheduled = false
  const publish = () => {
    scheduled = false
    for (const [field, metric] of trafficCounters) {
      if (traffic[field] > 0) metric(metrics).updateUnsafe(traffic[field], context)
      traffic[field] = 0
    }
  }
  const published = () => {
    if (!scheduled) {
      scheduled = true
      queueMicrotask(publish)
    }
  }
  return { traffic, published }
}

const INSTRUMENTED = "~@effect-ipc/core/Observability/instrumented"

/** True for a channel made by `instrumentChannel`. */
const isInstrumented = (channel: IpcChannel.IpcChannel): boolean => Predicate.hasProperty(channel, INSTRUMENTED)

/** One send in `SEND_WAIT_SAMPLE` is timed for `effect_ipc_send_wait_ms` (the first of each channel, then every 64th). */
export const SEND_WAIT_SAMPLE = 64

/**
 * Counts messages, bytes, send waits and errors of `channel` into the metrics
 * of its scheme, and traces its `close` as `effect-ipc.close` (once). Metric
 * updates go to the `MetricRegistry` of `context` (the dialling or accepting
 * fiber's). `origin` says whether it was dialled or accepted, and is counted.
 *
 * Cheap on the hot path: a message adds to plain totals that the metrics
 * read when they are read (see `trafficOf`), with no update, lookup or
 * microtask of its own (with effect before 4.0.6, added to the counters once
 * per burst); one send in `SEND_WAIT_SAMPLE` is timed. A channel whose
 * receives are its inbox's own (made by `IpcChannel.make` over `Inbox.make`)
 * is counted inside the inbox, with no effect around each receive: every
 * message taken from it counts, through the channel returned or the one it
 * wraps (a second instrumentation of the channel into the same series
 * counts nothing more; one into another series counts around its own
 * receives).
 */
export const instrumentChannel = (
  channel: IpcChannel.IpcChannel,
  origin: "dialled" | "accepted",
  context: Context.Context<never>
): IpcChannel.IpcChannel => {
  if (isInstrumented(channel)) return channel
  const metrics = metricsOf(schemeOf(channel.address))
  metrics[origin].updateUnsafe(1, context)

  const series = seriesOf(metrics, context)
  const { published, traffic } = hooksAvailable
    ? { traffic: trafficOf(metrics, context, series), published: undefined }
    : publishedPerBurst(metrics, context)

  // one error is counted once, however often the channel reports it again
  // and the channel's end (Closed, ConnectionLost) once, whichever operations report it, in whatever words
  let lastError: unknown
  let endCounted = false
  const onError = (error: unknown) => {
    if (error === lastError) return
    lastError = error
    if (IpcError.isIpcError(error) && (error.reason._tag === "Closed" || error.reason._tag === "ConnectionLost")) {
      if (endCounted) return
      endCounted = true
    }
    countError(metrics, error, context)
  }
  const observeError = (error: unknown) => Effect.sync(() => onError(error))
  const failed = (error: IpcError.IpcError) => {
    onError(error)
    return Effect.fail(error)
  }
  const received = (message: Uint8Array) => {
    traffic.messagesIn++
    traffic.bytesIn += message.byteLength
    published?.()
    return message
  }
  const receivedAll = (messages: NonEmptyReadonlyArray<Uint8Array>) => {
    let bytes = 0
    for (let i = 0; i < messages.length; i++) bytes += messages[i]!.byteLength
    traffic.messagesIn += messages.length
    traffic.bytesIn += bytes
    published?.()
    return messages
  }

  // a channel whose receives are its inbox's own is counted by the inbox as it hands messages over (no
  // effect around each receive); any other around its receives. The same channel instrumented again into
  // the same totals is counted by the inbox alone (around its receives as well, each was counted twice)
  const observe = Taken.of(channel)
  const inInbox = observe !== undefined && observe({
    // the series (with effect before 4.0.6 a channel counts into totals of its own, added to it)
    into: series.traffic,
    taken: (messages, bytes) => {
      traffic.messagesIn += messages
      traffic.bytesIn += bytes
      published?.()
    },
    failed: onError
  })

  // a message is counted once the channel has taken it (a send refused or failed is not), as the send
  // runs: through the channel's eager send where it has one, inside this one effect (no second one); one
  // send in SEND_WAIT_SAMPLE is run inside a timer, which also sees (and counts) its failure
  let sends = 0
  const countOut = (bytes: number): void => {
    traffic.messagesOut++
    traffic.bytesOut += bytes
    published?.()
  }
  // the wait of `sent` (what is left of a send that started at `start`), recorded as it ends
  const timed = (
    start: number,
    sent: Effect.Effect<void, IpcError.IpcError>,
    bytes: number
  ): Effect.Effect<void, IpcError.IpcError> =>
    Effect.matchEffect(sent, {
      onFailure: failed,
      onSuccess: () => {
        countOut(bytes)
        metrics.sendWait.updateUnsafe(performance.now() - start, context)
        return Effect.void
      }
    })
  /** Counts `left` (what is left of a send of `bytes`) once it has succeeded; timed from `start` if one. */
  const counted = (
    start: number | undefined,
    left: Effect.Effect<void, IpcError.IpcError>,
    bytes: number
  ): Effect.Effect<void, IpcError.IpcError> => {
    if (start !== undefined) return timed(start, left, bytes)
    if (left === Effect.void) {
      countOut(bytes)
      return left
    }
    return Effect.tap(left, () => Effect.sync(() => countOut(bytes)))
  }
  /** When this send started, if it is the one in SEND_WAIT_SAMPLE that is timed. */
  const startOf = (): number | undefined => sends++ % SEND_WAIT_SAMPLE === 0 ? performance.now() : undefined
  const innerEager = Eager.of(channel)
  const innerText = Eager.textOf(channel)
  const sendNow = (message: Uint8Array): Effect.Effect<void, IpcError.IpcError> => {
    const start = startOf()
    return counted(start, innerEager === undefined ? channel.send(message) : innerEager(message), sizeOf(message))
  }
  const send = (message: Uint8Array): Effect.Effect<void, IpcError.IpcError> => Effect.suspend(() => sendNow(message))
  // the channel's eager send (see `internal/eager.ts`), counted and timed the same way
  if (innerEager !== undefined) {
    Eager.register(
      send,
      sendNow,
      innerText === undefined ? undefined : (text) => {
        const start = startOf()
        return counted(start, innerText(text), Bytes.utf8Length(text))
      }
    )
  }

  // a batch is counted once it has all been taken (one that fails is not counted, though its first
  // messages may have left); its failure is counted
  const inner = channel.sendAll
  const sendAll = inner === undefined ? undefined : IpcChannel.pairSendAll(send, (messages) =>
    Effect.suspend(() => {
      let bytes = 0
      for (let i = 0; i < messages.length; i++) bytes += sizeOf(messages[i]!)
      return Effect.matchEffect(inner(messages), {
        onFailure: failed,
        onSuccess: () => {
          traffic.messagesOut += messages.length
          traffic.bytesOut += bytes
          published?.()
          return Effect.void
        }
      })
    }))

  let closeTraced = false
  const close = IpcChannel.extendClose(channel.close, (own) =>
    Effect.suspend(() => {
      if (closeTraced) return own
      closeTraced = true
      return Effect.withSpan(own, SpanNames.close, { attributes: channelAttributes(channel) })
    }))
  // the transport's own fields stay (shm's `receiveView` reads a large message in place: not counted)
  const instrumented: IpcChannel.IpcChannel & { readonly [INSTRUMENTED]: true } = {
    ...channel,
    [IpcChannel.TypeId]: IpcChannel.TypeId,
    [INSTRUMENTED]: true,
    address: channel.address,
    peer: channel.peer,
    send,
    sendAll,
    receive: inInbox ? channel.receive : Effect.map(Effect.tapError(channel.receive, observeError), received),
    receiveAll: inInbox
      ? channel.receiveAll
      : Effect.map(Effect.tapError(channel.receiveAll, observeError), receivedAll),
    messages: inInbox ? channel.messages : Stream.transformPull(
      channel.messages,
      (pull) => Effect.succeed(Effect.map(Effect.tapError(pull, observeError), receivedAll))
    ),
    close,
    closed: channel.closed
  }
  return instrumented
}
