/**
 * Floods of the unix and fifo listeners (silent connections, half-open
 * handshakes, garbage frames, half headers) from another process: a
 * well-behaved client's round trips succeed during the flood, and the
 * listener's descriptors and memory come back to their baseline after it.
 */
import * as Transport from "@effect-ipc/core/Transport"
import { Fifo, UnixSocket } from "@effect-ipc/transport-pipe"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Path from "node:path"
import * as V8 from "node:v8"
import * as Vm from "node:vm"
import { openFds, python, rss, start, tempDir, waitFor } from "./helpers.ts"

const flood = Path.join(import.meta.dirname, "fixtures/flood.py")
const pinger = Path.join(import.meta.dirname, "fixtures/pinger.py")

V8.setFlagsFromString("--expose-gc")
const gc = Vm.runInNewContext("gc") as () => void

/** Memory may grow this much over a flood (young-generation growth included); a leak would go past it. */
const RSS_BOUND = 96 * 1024 * 1024

const echo = (transport: Transport.TransportShape, address: string) =>
  Effect.gen(function*() {
    const listener = yield* transport.listen(address)
    yield* Effect.forkScoped(
      Transport.serve(listener, (channel) => Effect.forever(Effect.flatMap(channel.receive, channel.send)))
    )
  })

const message = (i: number) => new TextEncoder().encode(`round trip ${i}`)

describe("floods", () => {
  it.live(
    "unix://: 450 hostile connections; a good client is served throughout; fds and RSS come back",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-flood-")
        const path = Path.join(dir, "flood.sock")
        const transport = UnixSocket.make({ frameTimeout: "1 second" })
        yield* echo(transport, `unix://${path}`)
        const good = yield* transport.dial(`unix://${path}`)
        yield* good.send(message(-1))
        yield* good.receive
        gc()
        const baseline = { fds: openFds(), rss: rss() }

        const attacker = yield* start(python, [flood, "unix", path, "150"])
        yield* attacker.line(/^flooding$/)
        let peak = openFds()
        for (let i = 0; i < 200; i++) {
          yield* good.send(message(i))
          assert.deepStrictEqual(yield* good.receive, message(i))
          peak = Math.max(peak, openFds())
        }
        yield* waitFor(() => (peak = Math.max(peak, openFds())) - baseline.fds >= 100, 15_000)
        assert.isAtLeast(peak - baseline.fds, 100, "the flood reached the listener")
        yield* attacker.finish

        assert.isTrue(yield* waitFor(() => openFds() <= baseline.fds, 15_000), `fds ${openFds()} > ${baseline.fds}`)
        gc()
        assert.isBelow(rss() - baseline.rss, RSS_BOUND)
        yield* good.send(message(999))
        assert.deepStrictEqual(yield* good.receive, message(999))
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "unix://: a program that never accepts holds at most MAX_UNACCEPTED connections; the rest are closed as they come",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-flood-")
        const path = Path.join(dir, "unaccepted.sock")
        const transport = UnixSocket.make()
        const listener = yield* transport.listen(`unix://${path}`)
        gc()
        const baseline = openFds()
        // 1200 connections from another process, none of them accepted here
        const attacker = yield* start(python, [flood, "silent", path, "1200"])
        yield* attacker.line(/^flooding$/)
        assert.isTrue(
          yield* waitFor(() => openFds() - baseline >= Transport.MAX_UNACCEPTED, 20_000),
          `the flood reached the listener: ${openFds() - baseline} descriptors`
        )
        // the refused are closed (after their linger: they do not answer the goodbye); the rest stay
        const bound = Transport.MAX_UNACCEPTED + 16
        yield* Effect.sleep("3 seconds")
        assert.isTrue(
          yield* waitFor(() => openFds() - baseline <= bound, 20_000),
          `the listener holds ${openFds() - baseline} descriptors for 1200 unaccepted connections (bound ${bound})`
        )
        // those kept are served: accepted in order, and a new client after them
        const first = yield* listener.accept
        assert.strictEqual(first.peer.pid, attacker.pid)
        for (let i = 1; i < Transport.MAX_UNACCEPTED; i++) yield* listener.accept
        const good = yield* transport.dial(`unix://${path}`)
        const served = yield* listener.accept
        yield* good.send(message(1))
        assert.deepStrictEqual(yield* served.receive, message(1))
        // the flooder saw the refused closed, and only those
        const said = yield* attacker.finish
        assert.strictEqual(said.at(-1), `closed ${1200 - Transport.MAX_UNACCEPTED}`)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "fifo://: claims, garbage, half headers and silent claims; a good client still gets its turns",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-flood-")
        const base = Path.join(dir, "pair")
        const address = `fifo://${base}`
        const transport = Fifo.make({ helloTimeout: "300 millis", frameTimeout: "1 second" })
        yield* echo(transport, address)
        // the pair is busy (AddressInUse) or between peers (NotFound) while the flood holds it: try again
        const conversation = (i: number) =>
          Effect.scoped(Effect.gen(function*() {
            const channel = yield* transport.dial(address)
            yield* channel.send(message(i))
            // a reply lost on its way would otherwise wait here until the test's own timeout
            assert.deepStrictEqual(
              yield* channel.receive.pipe(
                Effect.timeoutOrElse({ duration: "10 seconds", orElse: () => Effect.die(`reply ${i} never came`) })
              ),
              message(i)
            )
            yield* channel.close
          })).pipe(
            Effect.retry({
              schedule: Schedule.spaced("20 millis").pipe(Schedule.upTo({ times: 1000 })),
              while: (error) => error.reason._tag === "AddressInUse" || error.reason._tag === "NotFound"
            })
          )
        yield* conversation(-1)
        gc()
        const baseline = { fds: openFds(), rss: rss() }

        const attacker = yield* start(python, [flood, "fifo", base, "150"])
        for (let i = 0; i < 10; i++) yield* conversation(i)
        yield* attacker.line(/^done \d+$/)
        assert.isAbove(Number(attacker.lines.at(-1)!.split(" ")[1]), 0, "the flood claimed the pair")

        yield* conversation(999)
        assert.isTrue(yield* waitFor(() => openFds() <= baseline.fds, 15_000), `fds ${openFds()} > ${baseline.fds}`)
        gc()
        assert.isBelow(rss() - baseline.rss, RSS_BOUND)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "unix://: a peer that sends pings and reads none of the pongs is stopped at the high-water mark; it gets every pong once it reads",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-flood-")
        const path = Path.join(dir, "pings.sock")
        const highWaterMark = 1024 * 1024
        const transport = UnixSocket.make({ highWaterMark })
        const listener = yield* transport.listen(`unix://${path}`)
        gc()
        const before = rss()
        // 256 MiB of 64 KiB pings: without a limit every pong piles up here
        const peer = yield* start(python, [pinger, path, String(64 * 1024), String(256 * 1024 * 1024)])
        const channel = yield* listener.accept
        const stuck = yield* peer.line(/^(stuck|sent) \d+$/)
        const sent = Number(stuck.split(" ")[1])
        assert.match(stuck, /^stuck/, "the listener stopped reading pings whose pongs nobody read")
        // what the peer could send: the mark, one chunk read past it, and the two sockets' buffers
        assert.isBelow(sent, highWaterMark + 16 * 1024 * 1024, `${sent} bytes of pings taken`)
        gc()
        assert.isBelow(rss() - before, 64 * 1024 * 1024, "the pongs were held within the mark")

        // once the peer reads, reading goes on: every ping is answered, and what follows arrives
        yield* peer.say("read")
        const pongs = yield* peer.line(/^pongs \d+ of \d+$/)
        const [, got, of] = /^pongs (\d+) of (\d+)$/.exec(pongs)!
        assert.strictEqual(got, of, pongs)
        assert.strictEqual(new TextDecoder().decode(yield* channel.receive), "after")
        yield* peer.finish
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "unix://: two peers with heartbeats, each sending messages over the high-water mark while the other reads: both finish (a heartbeat's pong stops no reading)",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-flood-")
        const address = `unix://${Path.join(dir, "both.sock")}`
        // a ping every 10 ms, answered while each side's own messages wait for the other to read them
        const transport = UnixSocket.make({ heartbeat: { interval: "10 millis", timeout: "5 seconds" } })
        const listener = yield* transport.listen(address)
        const dialled = yield* transport.dial(address)
        const accepted = yield* listener.accept
        const payload = new Uint8Array(8 * 1024 * 1024)
        const count = 16
        const side = (channel: typeof dialled) =>
          Effect.all([
            Effect.repeat(channel.send(payload), { times: count - 1 }),
            Effect.replicateEffect(channel.receive, count)
          ], { concurrency: 2 })
        const [[, gotA], [, gotB]] = yield* Effect.all([side(dialled), side(accepted)], { concurrency: 2 })
        assert.deepStrictEqual([gotA.length, gotB.length], [count, count])
      }).pipe(Effect.scoped),
    60_000
  )
})
