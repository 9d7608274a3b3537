/**
 * `effect-ipc nng <protocol>` and the nng transport through the other
 * commands, as real processes; `nngcat` (nng's own tool) is the other end
 * where it shows that the wire is nng's.
 */
import { Rep } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { cli, type Proc, runCli, start } from "./helpers.ts"

const freePort = (): number =>
  Number(ChildProcess.execFileSync(process.execPath, [
    "-e",
    "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{process.stdout.write(String(s.address().port));s.close()})"
  ], { encoding: "utf8" }))

// a listening CLI binds port 0 and says where: a port picked beforehand may be taken meanwhile
const anyPort = "tcp://127.0.0.1:0"

/** Waits for `proc` to say "<verb> on <address>" and returns the address (the port bound). */
const boundAt = (proc: Proc, verb: string) =>
  Effect.gen(function*() {
    yield* proc.ready(`${verb} on`)
    return new RegExp(`${verb} on (\\S+)`).exec(proc.stderr())![1]!
  })

describe("effect-ipc nng", () => {
  it.live("req and rep, with the transport options", () =>
    Effect.gen(function*() {
      const rep = yield* cli("nng", "rep", "--listen", anyPort, "--data", "pong", "--count", "2", "--recv-buffer", "4")
      const address = yield* boundAt(rep, "replying")
      const req = yield* cli(
        "nng",
        "req",
        "--dial",
        address,
        "--data",
        "ping",
        "--count",
        "2",
        "--reconnect-min",
        "10",
        "--reconnect-max",
        "100",
        "--send-buffer",
        "2",
        "--max-message-size",
        "1024"
      )
      assert.strictEqual(yield* req.exit, 0, req.stderr())
      assert.strictEqual(req.stdout(), "pong\npong\n")
      assert.strictEqual(yield* rep.exit, 0, rep.stderr())
      assert.strictEqual(rep.stdout(), "ping\nping\n")
    }).pipe(Effect.scoped))

  it.live("pub and sub with a topic; nngcat subscribes too", () =>
    Effect.gen(function*() {
      // the publisher waits a second for its subscribers, then publishes for 15 s (subscribers that
      // start late on a busy machine still hear it; each exits once it has what it waits for)
      const pub = yield* cli(
        "nng",
        "pub",
        "--listen",
        anyPort,
        "--topic",
        "weather.",
        "--data",
        "oslo",
        "--delay",
        "1000",
        "--count",
        "600",
        "--interval",
        "25"
      )
      const address = yield* boundAt(pub, "publishing")
      const weather = yield* cli("nng", "sub", "--dial", address, "--subscribe", "weather.", "--count", "2")
      const sports = yield* cli("nng", "sub", "--dial", address, "--subscribe", "sports.")
      const peer = yield* start("stdbuf", [
        "-oL",
        "nngcat",
        "--sub",
        "--dial",
        address,
        "--subscribe",
        "weather.",
        "--quoted",
        "--count",
        "1"
      ])
      assert.strictEqual(yield* weather.exit, 0, weather.stderr())
      assert.strictEqual(weather.stdout(), "weather.oslo\nweather.oslo\n")
      assert.strictEqual(yield* peer.exit, 0, peer.stderr())
      assert.strictEqual(peer.stdout(), `"weather.oslo"\n`, peer.stderr())
      assert.strictEqual(yield* pub.exit, 0, pub.stderr())
      assert.strictEqual(sports.stdout(), "", "the sports subscriber got nothing")
    }).pipe(Effect.scoped))

  it.live("rep answers nngcat --req; req calls nngcat --rep", () =>
    Effect.gen(function*() {
      // nngcat's request to our replier
      const rep = yield* cli("nng", "rep", "--listen", anyPort, "--data", "pong", "--count", "1")
      const address = yield* boundAt(rep, "replying")
      const caller = yield* start("stdbuf", ["-oL", "nngcat", "--req", "--dial", address, "--data", "ping", "--quoted"])
      assert.strictEqual(yield* rep.exit, 0, rep.stderr())
      assert.strictEqual(rep.stdout(), "ping\n")
      assert.strictEqual(yield* caller.exit, 0, caller.stderr())
      assert.strictEqual(caller.stdout(), `"pong"\n`)
      // our requests to nngcat's replier (it listens: a port picked beforehand)
      const at = `tcp://127.0.0.1:${freePort()}`
      const replier = yield* start("stdbuf", [
        "-oL",
        "nngcat",
        "--rep",
        "--listen",
        at,
        "--data",
        "pong from nngcat",
        "--quoted",
        "--count",
        "2"
      ])
      const req = yield* cli("nng", "req", "--dial", at, "--data", "ping from effect-ipc", "--count", "2")
      assert.strictEqual(yield* req.exit, 0, req.stderr())
      assert.strictEqual(req.stdout(), "pong from nngcat\npong from nngcat\n")
      assert.strictEqual(yield* replier.exit, 0, replier.stderr())
      assert.strictEqual(replier.stdout(), `"ping from effect-ipc"\n"ping from effect-ipc"\n`)
    }).pipe(Effect.scoped), 60_000)

  it.live("sub hears nngcat --pub on its topic only; pub dials nngcat --sub", () =>
    Effect.gen(function*() {
      const sub = yield* cli("nng", "sub", "--listen", anyPort, "--subscribe", "weather.", "--count", "2")
      const address = yield* boundAt(sub, "subscribed")
      // each nngcat publisher waits a second for its connection, then publishes once a second
      const publishers = [
        yield* start("nngcat", ["--pub", "--dial", address, "--data", "sports.1-0", "--delay", "1", "--interval", "1"]),
        yield* start("nngcat", [
          "--pub",
          "--dial",
          address,
          "--data",
          "weather.oslo",
          "--delay",
          "1",
          "--interval",
          "1"
        ])
      ]
      assert.strictEqual(yield* sub.exit, 0, sub.stderr())
      assert.strictEqual(sub.stdout(), "weather.oslo\nweather.oslo\n")
      for (const publisher of publishers) yield* publisher.stop
      // our publisher dials nngcat's subscriber
      const at = `tcp://127.0.0.1:${freePort()}`
      const peer = yield* start("stdbuf", [
        "-oL",
        "nngcat",
        "--sub",
        "--listen",
        at,
        "--subscribe",
        "weather.",
        "--quoted",
        "--count",
        "2"
      ])
      const pub = yield* cli(
        "nng",
        "pub",
        "--dial",
        at,
        "--topic",
        "weather.",
        "--data",
        "bergen",
        "--delay",
        "500",
        "--count",
        "600",
        "--interval",
        "25"
      )
      assert.strictEqual(yield* peer.exit, 0, peer.stderr())
      assert.strictEqual(peer.stdout(), `"weather.bergen"\n"weather.bergen"\n`)
      yield* pub.stop
    }).pipe(Effect.scoped), 60_000)

  it.live("push and pull, in hex; a message over --max-message-size is refused by the puller", () =>
    Effect.gen(function*() {
      const pull = yield* cli(
        "--format",
        "hex",
        "nng",
        "pull",
        "--listen",
        anyPort,
        "--count",
        "2",
        "--max-message-size",
        "4"
      )
      const address = yield* boundAt(pull, "pulling")
      // nng drops the connection of a peer that sends more than the limit. The pusher hands its
      // message to nng and is done (the refusal is the puller's); it goes first, while the puller is
      // still there to take it: a pusher with no puller waits for one
      const tooLong = yield* cli("nng", "push", "--dial", address, "--data", "too long for four bytes")
      assert.strictEqual(yield* tooLong.exit, 0, tooLong.stderr())
      const small = yield* cli("--format", "hex", "nng", "push", "--dial", address, "--data", "6869", "--count", "2")
      assert.strictEqual(yield* small.exit, 0, small.stderr())
      assert.strictEqual(yield* pull.exit, 0, pull.stderr())
      assert.strictEqual(pull.stdout(), "6869\n6869\n")
    }).pipe(Effect.scoped))

  it.live("pair, against nngcat --pair1", () =>
    Effect.gen(function*() {
      const pair = yield* cli("nng", "pair", "--listen", anyPort, "--data", "hello nngcat", "--count", "1")
      const address = yield* boundAt(pair, "paired")
      // nngcat sends its --data once, then prints what it receives until it is killed
      const peer = yield* start("stdbuf", [
        "-oL",
        "nngcat",
        "--pair1",
        "--dial",
        address,
        "--data",
        "hello effect-ipc",
        "--quoted"
      ])
      assert.strictEqual(yield* pair.exit, 0, pair.stderr())
      assert.strictEqual(pair.stdout(), "hello effect-ipc\n")
      yield* Effect.gen(function*() {
        while (!peer.stdout().includes("\n")) yield* Effect.sleep("20 millis")
      }).pipe(Effect.timeout("10 seconds"))
      assert.strictEqual(peer.stdout(), `"hello nngcat"\n`)
    }).pipe(Effect.scoped))

  it.live("listen, send and call reach the nng transport by the address's scheme", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-cli-nng-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
      const address = `nng+ipc://${dir}/cli.ipc`
      const listener = yield* cli("listen", address, "--count", "1")
      yield* listener.ready("listening on")
      const sent = yield* cli("send", address, "over nng")
      assert.strictEqual(yield* sent.exit, 0, sent.stderr())
      assert.strictEqual(yield* listener.exit, 0, listener.stderr())
      assert.strictEqual(listener.stdout(), "over nng\n")
      // `serve` reports the address it was given, not a port bound: it needs one picked beforehand
      const rpc = `nng+tcp://127.0.0.1:${freePort()}`
      const server = yield* cli("serve", rpc)
      yield* server.ready("serving DemoApi")
      const call = yield* cli("call", rpc, "Add", `{"a":2,"b":40}`)
      assert.strictEqual(yield* call.exit, 0, call.stderr())
      assert.strictEqual(call.stdout(), "42\n")
      assert.deepStrictEqual(Fs.readdirSync(dir), [], "nothing left in the directory")
    }).pipe(Effect.scoped))
})

describe("nng without an address", () => {
  it.live(
    "names the socket the user asked for (rep, which answers through a raw socket, said rep-raw)",
    () =>
      Effect.gen(function*() {
        for (const pattern of ["rep", "pull"]) {
          const ran = yield* runCli(["nng", pattern])
          assert.strictEqual(ran.code, 1, ran.stderr)
          assert.strictEqual(
            ran.stderr,
            `effect-ipc: InvalidAddress: a ${pattern} socket needs an address to listen at or dial\n`
          )
        }
      }),
    60_000
  )
})

describe("nng req that times out", () => {
  it.live(
    "says no peer connected, where and why, when nobody listens; and no reply when the server is silent",
    () =>
      Effect.gen(function*() {
        // nothing listens there: the connection is refused, again and again
        const refused = `tcp://127.0.0.1:${freePort()}`
        const alone = yield* runCli(["nng", "req", "--dial", refused, "--data", "x", "--timeout", "1"])
        assert.deepStrictEqual(alone, {
          code: 1,
          stdout: "",
          stderr: `effect-ipc: Timeout: no peer connected to ${refused} within 1s (connection refused)\n`
        })
        // a server that takes requests and never answers
        const bound = yield* Rep.serve({ listen: "tcp://127.0.0.1:0" }, () => Effect.never)
        const address = bound.listening[0]!
        const silent = yield* runCli(["nng", "req", "--dial", address, "--data", "x", "--timeout", "1"])
        assert.deepStrictEqual(silent, {
          code: 1,
          stdout: "",
          stderr: `effect-ipc: Timeout: no reply within 1s (${address})\n`
        })
      }).pipe(Effect.scoped),
    60_000
  )
})
