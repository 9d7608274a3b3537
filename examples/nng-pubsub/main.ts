/**
 * nng publish/subscribe across processes: this program publishes a bulletin
 * (weather and sports news, then `end.`) every 100 ms on an nng pub socket and
 * starts three subscriber processes (this file with `subscribe`): one for
 * `weather.`, one for `sports.`, one for everything (the empty topic). A
 * topic is a byte prefix of the message. Pub/sub is lossy by design: a
 * subscriber hears nothing published before it connected, so each one skips
 * to the first `end.` and prints the next whole bulletin of its topic.
 *
 *   node main.ts                          node main.ts subscribe tcp://127.0.0.1:PORT weather.
 */
import { PubSub } from "@effect-ipc/transport-nng"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Effect, Stream } from "effect"
import { ChildProcess } from "effect/process"

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const bulletin = ["weather.oslo 3C", "sports.1-0 at half time", "weather.bergen 7C, rain", "end."]

const publish = Effect.gen(function*() {
  const publisher = yield* PubSub.publisher({ listen: "tcp://127.0.0.1:0" }) // port 0: any free port
  const address = publisher.bound.listening[0]!
  const publishing = Effect.gen(function*() {
    for (const news of bulletin) yield* publisher.publish(encoder.encode(news))
    yield* Effect.sleep("100 millis")
  }).pipe(Effect.forever)

  // a subscriber process; what it prints is shown once it has exited
  const subscriber = (topic: string) =>
    Effect.gen(function*() {
      const child = yield* ChildProcess.make(
        process.execPath,
        [...process.execArgv, import.meta.filename, "subscribe", address, topic],
        { stderr: "inherit" }
      )
      const heard = yield* child.stdout.pipe(Stream.decodeText, Stream.mkString)
      const code = yield* child.exitCode
      return `subscriber "${topic}" (exit code ${code}):\n${heard}`
    }).pipe(Effect.scoped)

  const reports = yield* Effect.raceFirst(
    Effect.all([subscriber("weather."), subscriber("sports."), subscriber("")], { concurrency: "unbounded" }),
    publishing
  )
  for (const report of reports) process.stdout.write(report)
})

const subscribe = (address: string, topic: string) =>
  Effect.gen(function*() {
    // `end.` too, to know where a bulletin ends (the empty topic matches it anyway)
    const subscriber = yield* PubSub.subscriber({ dial: address, topics: [topic, "end."] })
    const next = Effect.map(subscriber.receive, (bytes) => decoder.decode(bytes))
    while ((yield* next) !== "end.") {
      // joined in the middle of a bulletin: skip to its end
    }
    for (let news = yield* next; news !== "end."; news = yield* next) console.log(`  ${news}`)
  })

const [role, address, topic] = process.argv.slice(2)
const program = role === "subscribe" ? subscribe(address!, topic!) : publish

// every socket closes with the scope, and subscribers still running are ended (Ctrl-C too)
program.pipe(Effect.scoped, Effect.provide(NodeServices.layer), NodeRuntime.runMain)
