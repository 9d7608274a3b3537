/**
 * Interop with nng itself: `nngcat` (Debian `nng-utils`) as the peer of our
 * sockets in every role, and openclaw-ipc's JSON messages, hand-typed through
 * nngcat and spoken by a peer written against libnng (`fixtures/openclaw_peer.py`).
 */
import { OpenClaw, Pipeline, PubSub, Rep, Req } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as Path from "node:path"
import { unusedPort } from "./fixtures/ports.ts"
import * as Child from "./fixtures/process.ts"

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const text = (bytes: Uint8Array) => decoder.decode(bytes)
// where nngcat listens (it cannot tell the port it bound); where we listen, it is port 0
const tcp = () => `tcp://127.0.0.1:${unusedPort()}`
const anyPort = "tcp://127.0.0.1:0"
// line-buffered, so that what it prints arrives at once; `--quoted` prints each message as a
// C string on its own line, which (for ASCII) is a JSON string
const nngcat = (...args: ReadonlyArray<string>) => Child.spawn("stdbuf", ["-oL", "nngcat", ...args])
const printed = (line: string): string => JSON.parse(line)

// a peer written against libnng itself (Python ctypes on libnng.so.1), speaking openclaw-ipc's envelope
const libnngPeer = (...args: ReadonlyArray<string>) =>
  Child.spawn("python3", [Path.join(import.meta.dirname, "fixtures", "openclaw_peer.py"), ...args])

describe("interop with nngcat", () => {
  it.live("nngcat --req calls our Rep", () =>
    Effect.gen(function*() {
      const bound = yield* Rep.serve({ listen: anyPort }, (body) => Effect.succeed(encoder.encode(`re: ${text(body)}`)))
      const address = bound.listening[0]!
      const peer = yield* nngcat("--req", "--dial", address, "--data", "hello from nngcat", "--quoted")
      assert.strictEqual(printed(yield* peer.waitFor((line) => line.length > 0)), "re: hello from nngcat")
    }).pipe(Effect.scoped))

  it.live("our Req calls nngcat --rep", () =>
    Effect.gen(function*() {
      const address = tcp()
      const peer = yield* nngcat("--rep", "--listen", address, "--data", "pong", "--quoted", "--count", "3")
      const requester = yield* Req.make({ dial: address })
      for (const n of [1, 2, 3]) assert.strictEqual(text(yield* requester.request(encoder.encode(`ping ${n}`))), "pong")
      yield* peer.exited
      assert.deepStrictEqual(peer.lines.map(printed), ["ping 1", "ping 2", "ping 3"])
    }).pipe(Effect.scoped))

  it.live("nngcat --pub publishes to our Sub, filtered by topic", () =>
    Effect.gen(function*() {
      const weather = yield* PubSub.subscriber({ listen: anyPort, topics: ["weather."] })
      const address = weather.bound.listening[0]!
      const got: Array<string> = []
      yield* Effect.forkScoped(Stream.runForEach(weather.messages, (m) => Effect.sync(() => void got.push(text(m)))))
      // two publishers, one per topic; each waits 1 s for the connection, then sends 10 messages
      const publishers = [
        yield* nngcat("--pub", "--dial", address, "--data", "sports.1-0", "--count", "10", "--delay", "1"),
        yield* nngcat("--pub", "--dial", address, "--data", "weather.oslo 3C", "--count", "10", "--delay", "1")
      ]
      for (const publisher of publishers) yield* publisher.exited
      // wait for what gets through: the filter is what is checked, not how many survived the burst
      yield* Effect.gen(function*() {
        while (got.length === 0) yield* Effect.sleep("10 millis")
      }).pipe(Effect.timeout("20 seconds"))
      // pub/sub may drop under a burst (nng's per-subscriber queue): all that arrives is the subscribed topic
      assert.isAbove(got.length, 0)
      assert.deepStrictEqual(got, Array.from({ length: got.length }, () => "weather.oslo 3C"))
    }).pipe(Effect.scoped), 30_000)

  it.live("our Pub publishes to nngcat --sub, which gets only its topic", () =>
    Effect.gen(function*() {
      const publisher = yield* PubSub.publisher({ listen: anyPort })
      const address = publisher.bound.listening[0]!
      const peer = yield* nngcat("--sub", "--dial", address, "--subscribe", "weather.", "--quoted", "--count", "3")
      let done = false
      yield* Effect.forkScoped(Effect.andThen(peer.exited, Effect.sync(() => void (done = true))))
      for (let i = 0; !done && i < 1000; i++) {
        yield* publisher.publishTo("sports.", encoder.encode(`${i}`))
        yield* publisher.publishTo("weather.", encoder.encode(`${i}`))
        yield* Effect.sleep("10 millis")
      }
      assert.strictEqual(peer.lines.length, 3)
      for (const line of peer.lines) assert.match(printed(line), /^weather\.\d+$/)
    }).pipe(Effect.scoped), 30_000)

  it.live(
    "a late subscriber (nngcat, and ours) gets nothing published before it subscribed",
    () =>
      Effect.gen(function*() {
        const publisher = yield* PubSub.publisher({ listen: anyPort })
        const address = publisher.bound.listening[0]!
        // published while nobody subscribes: dropped, never kept for whoever comes later
        for (let i = 0; i < 100; i++) yield* publisher.publishTo("news.", encoder.encode(`before ${i}`))
        const peer = yield* nngcat("--sub", "--dial", address, "--subscribe", "news.", "--quoted")
        const ours = yield* PubSub.subscriber({ dial: address, topics: ["news."] })
        const got: Array<string> = []
        yield* Effect.forkScoped(Stream.runForEach(ours.messages, (m) => Effect.sync(() => void got.push(text(m)))))
        // publish until both have heard something (they connect in the background)
        for (let i = 0; (peer.lines.length < 3 || got.length < 3) && i < 2000; i++) {
          yield* publisher.publishTo("news.", encoder.encode(`after ${i}`))
          yield* Effect.sleep("10 millis")
        }
        const heard = peer.lines.map(printed)
        for (const messages of [heard, got]) {
          assert.isAtLeast(messages.length, 3, JSON.stringify({ heard, got }))
          for (const message of messages) assert.match(message, /^news\.after \d+$/)
          // in order, none twice
          const numbers = messages.map((message) => Number(message.split(" ")[1]))
          assert.deepStrictEqual(numbers, numbers.toSorted((a, b) => a - b))
          assert.strictEqual(new Set(numbers).size, numbers.length)
        }
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("nngcat --push feeds our Pull", () =>
    Effect.gen(function*() {
      const puller = yield* Pipeline.puller({ listen: anyPort })
      const address = puller.bound.listening[0]!
      yield* nngcat("--push", "--dial", address, "--data", "job", "--count", "20")
      const got = yield* Stream.runCollect(Stream.take(puller.messages, 20))
      assert.deepStrictEqual(got.map(text), Array.from({ length: 20 }, () => "job"))
    }).pipe(Effect.scoped))

  it.live("our Push feeds nngcat --pull", () =>
    Effect.gen(function*() {
      const address = tcp()
      const peer = yield* nngcat("--pull", "--listen", address, "--quoted", "--count", "20")
      const pusher = yield* Pipeline.pusher({ dial: address })
      for (let i = 0; i < 20; i++) yield* pusher.push(encoder.encode(`job ${i}`))
      yield* peer.exited
      assert.deepStrictEqual(peer.lines.map(printed), Array.from({ length: 20 }, (_, i) => `job ${i}`))
    }).pipe(Effect.scoped))
})

describe("openclaw-ipc messages", () => {
  // exactly what openclaw-ipc's serde derive writes for IpcMessage::request / ::event
  const openclawRequest =
    `{"id":"3f2c","payload":{"type":"request","method":"scene.open","params":{"path":"/tmp/a.hip"}}}`
  const openclawEvent = `{"id":"9a1b","payload":{"type":"event","event_type":"saved","data":{"frames":24}}}`

  it.live("serves an openclaw gateway's requests and events", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const bound = yield* OpenClaw.serve({ listen: anyPort }, {
        request: (method, params) =>
          method === "scene.open" ? Effect.succeed({ opened: params }) : Effect.fail(`no method ${method}`),
        event: (eventType, data) => Effect.sync(() => void events.push(`${eventType} ${JSON.stringify(data)}`))
      })
      const address = bound.listening[0]!
      const call = (json: string) =>
        Effect.gen(function*() {
          const peer = yield* nngcat("--req", "--dial", address, "--data", json, "--quoted")
          return JSON.parse(printed(yield* peer.waitFor((line) => line.length > 0)))
        }).pipe(Effect.scoped)
      assert.deepStrictEqual(yield* call(openclawRequest), {
        id: "3f2c",
        payload: { type: "response", success: true, result: { opened: { path: "/tmp/a.hip" } }, error: null }
      })
      assert.deepStrictEqual(yield* call(openclawRequest.replace("scene.open", "scene.close")), {
        id: "3f2c",
        payload: { type: "response", success: false, result: null, error: "no method scene.close" }
      })
      assert.deepStrictEqual((yield* call(openclawEvent)).payload, {
        type: "response",
        success: true,
        result: null,
        error: null
      })
      assert.deepStrictEqual(events, [`saved {"frames":24}`])
      const garbage = yield* call("not json")
      assert.strictEqual(garbage.payload.success, false)
    }).pipe(Effect.scoped))

  it.live("speaks to an openclaw server: its requests are what openclaw-ipc decodes", () =>
    Effect.gen(function*() {
      const address = tcp()
      // an openclaw server answering with serde's bytes for IpcMessage::success("7", {"ok": true})
      const answer = `{"id":"7","payload":{"type":"response","success":true,"result":{"ok":true},"error":null}}`
      const peer = yield* nngcat("--rep", "--listen", address, "--data", answer, "--quoted", "--count", "1")
      const client = yield* OpenClaw.client({ dial: address })
      const sent = OpenClaw.request("plugin.list", { verbose: true })
      const reply = yield* client.exchange(sent)
      assert.deepStrictEqual(reply, {
        id: "7",
        payload: { type: "response", success: true, result: { ok: true }, error: null }
      })
      yield* peer.exited
      const received = JSON.parse(printed(peer.lines[0]!))
      assert.deepStrictEqual(received, {
        id: sent.id,
        payload: { type: "request", method: "plugin.list", params: { verbose: true } }
      })
      assert.match(received.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    }).pipe(Effect.scoped))

  it.live("a libnng openclaw server answers our client: results, errors and event acknowledgements", () =>
    Effect.gen(function*() {
      const peer = yield* libnngPeer("server", "tcp://127.0.0.1:0", "3")
      const address = (yield* peer.waitFor((line) => line.startsWith("ready "))).slice("ready ".length)
      const client = yield* OpenClaw.client({ dial: address })
      assert.deepStrictEqual(yield* client.call("scene.open", { path: "/tmp/a.hip" }), {
        echo: { path: "/tmp/a.hip" },
        method: "scene.open"
      })
      const error = yield* Effect.flip(client.call("fail", null))
      assert.instanceOf(error, OpenClaw.OpenClawError)
      assert.strictEqual((error as OpenClaw.OpenClawError).error, "the method failed")
      yield* client.emit("saved", { frames: 24 })
      yield* peer.waitFor(() => peer.lines.length === 4)
      // what the peer received is openclaw's envelope, as serde would decode it
      const received = peer.lines.slice(1).map((line) => JSON.parse(line))
      assert.deepStrictEqual(received.map((m) => m.payload), [
        { type: "request", method: "scene.open", params: { path: "/tmp/a.hip" } },
        { type: "request", method: "fail", params: null },
        { type: "event", event_type: "saved", data: { frames: 24 } }
      ])
      for (const message of received) assert.match(message.id, /^[0-9a-f-]{36}$/)
    }).pipe(Effect.scoped))

  it.live("a libnng openclaw client calls our server, and reads our answer as serde writes it", () =>
    Effect.gen(function*() {
      const bound = yield* OpenClaw.serve({ listen: anyPort }, {
        request: (method, params) =>
          method === "plugin.list" ? Effect.succeed({ plugins: ["a", "b"], params }) : Effect.fail("no such method")
      })
      const address = bound.listening[0]!
      const ok = yield* libnngPeer("client", address, "plugin.list", `{"verbose":true}`)
      yield* ok.exited
      const [sent, answer] = ok.lines
      const id = JSON.parse(sent!).id
      // byte for byte what serde_json::to_vec(&IpcMessage::success(id, ...)) writes
      assert.strictEqual(
        answer,
        `{"id":"${id}","payload":{"type":"response","success":true,"result":{"plugins":["a","b"],"params":{"verbose":true}},"error":null}}`
      )
      const refused = yield* libnngPeer("client", address, "nope", "null")
      yield* refused.exited
      assert.deepStrictEqual(JSON.parse(refused.lines[1]!).payload, {
        type: "response",
        success: false,
        result: null,
        error: "no such method"
      })
    }).pipe(Effect.scoped))

  it.live("an openclaw call between our client and server: results, errors and events", () =>
    Effect.gen(function*() {
      const address = `inproc://openclaw-${Math.random()}`
      yield* OpenClaw.serve({ listen: address }, {
        request: (method, params) => method === "add" ? Effect.succeed(Number(params)) : Effect.fail("unknown method")
      })
      const client = yield* OpenClaw.client({ dial: address })
      assert.strictEqual(yield* client.call("add", 41), 41)
      const error = yield* Effect.flip(client.call("nope", null))
      assert.instanceOf(error, OpenClaw.OpenClawError)
      assert.strictEqual((error as OpenClaw.OpenClawError).error, "unknown method")
      yield* client.emit("saved", { frames: 1 })
    }).pipe(Effect.scoped))
})
