/**
 * What a listener logs and counts, for tests of its observability: a Logger
 * and a metric registry to provide to the fiber that listens, the messages
 * it logged, and how many connections it counted as refused.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Metric from "effect/Metric"

/** A listener's logs and counters, as `make` collects them. */
export interface Observed {
  /** Provide to the fiber that listens: it logs into `lines` and counts into a registry of its own. */
  readonly services: Layer.Layer<never>
  /** Every message logged, one line each (an array message's parts joined by spaces). */
  readonly lines: ReadonlyArray<string>
  /** The `effect_ipc_connections_refused` counter's total. */
  readonly refusals: Effect.Effect<number>
}

/** Collects what a listener logs and counts (see `Observed`). */
export const make = (): Observed => {
  const lines: Array<string> = []
  const logger = Logger.make(({ message }) => {
    lines.push((Array.isArray(message) ? message : [message]).map(String).join(" "))
  })
  const registry = new Map() as Metric.MetricRegistry
  return {
    services: Layer.mergeAll(Logger.layer([logger]), Layer.succeed(Metric.MetricRegistry, registry)),
    lines,
    refusals: Metric.snapshot.pipe(
      Effect.provideService(Metric.MetricRegistry, registry),
      Effect.map((snapshots) =>
        snapshots.filter((s) => s.id === "effect_ipc_connections_refused" && s.type === "Counter")
          .reduce((total, s) => total + Number((s.state as { count: number }).count), 0)
      )
    )
  }
}
