/**
 * The page: calls the demo RpcGroup over ws:// from the browser, with
 * `@effect-ipc/core` and the browser-safe `WsClient` (no `node:` imports),
 * and shows what it got. The server's address, token included, comes in the
 * page's URL fragment (`#ws=ws://127.0.0.1:PORT/demo?token=...`), which the
 * browser never sends to a server; the page removes it once read.
 */
import * as IpcRpc from "@effect-ipc/core/IpcRpc"
import * as WsAddress from "@effect-ipc/transport-ws/WsAddress"
import * as WsClient from "@effect-ipc/transport-ws/WsClient"
import { DemoApi } from "effect-ipc/DemoApi"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as RpcClient from "effect/rpc/RpcClient"
import * as Stream from "effect/Stream"

// the few browser globals this page uses (the project type-checks without the DOM library)
declare const document: { getElementById(id: string): { textContent: string | null } | null }
declare const location: { hash: string; pathname: string }
declare const history: { replaceState(data: null, unused: string, url: string): void }

const show = (id: string, text: string) =>
  Effect.sync(() => {
    const element = document.getElementById(id)
    if (element !== null) element.textContent = text
  })

const address = new URLSearchParams(location.hash.slice(1)).get("ws") ?? ""
history.replaceState(null, "", location.pathname)

const program = Effect.gen(function*() {
  const demo = yield* RpcClient.make(DemoApi)
  // a typed result
  yield* show("greet", (yield* demo.Greet({ name: "browser" })).replace(/ \(from pid \d+\)/, ""))
  // a typed error, caught by its tag
  yield* show(
    "divide",
    yield* demo.Divide({ a: 1, b: 0 }).pipe(
      Effect.map(String),
      Effect.catchTag("DivisionByZero", (error) => Effect.succeed(`DivisionByZero { dividend: ${error.dividend} }`))
    )
  )
  // a streamed response
  yield* show("countdown", (yield* Stream.runCollect(demo.Countdown({ from: 5 }))).join(" "))
  // a cancelled call: interrupting the fiber interrupts the call on the server too
  let seen = 0
  const long = yield* Effect.forkChild(
    Stream.runForEach(demo.Countdown({ from: 1_000_000_000 }), () => Effect.sync(() => seen++))
  )
  while (seen < 3) yield* Effect.sleep("5 millis")
  yield* Fiber.interrupt(long)
  const exit = yield* Fiber.await(long)
  const sum = yield* demo.Add({ a: 2, b: 40 })
  yield* show(
    "cancel",
    `${Exit.hasInterrupts(exit) ? "interrupted" : "not interrupted"}; the link still answers Add(2, 40) = ${sum}`
  )
  // without the token the server refuses the client: a typed error
  const parsed = yield* WsAddress.parse(address)
  const refused = yield* Effect.flip(Effect.scoped(WsClient.dial(parsed.url)))
  yield* show("no-token", `${refused.reason._tag}: ${refused.detail}`)
  yield* show("status", "done")
})

program.pipe(
  Effect.scoped,
  Effect.provide(
    IpcRpc.layerClientProtocol(address, { connectTimeout: "5 seconds" }).pipe(
      Layer.provide(IpcRpc.layerSerialization),
      // the token travels in the address (`?token=...`); the client sends it as a subprotocol
      Layer.provide(WsClient.layer())
    )
  ),
  Effect.catchCause((cause) => {
    const error = Cause.squash(cause)
    return show("status", `failed: ${error instanceof Error ? error.message : String(error)}`)
  }),
  Effect.runPromise,
  (done) => void done
)
