import * as UnixSocket from "@effect-ipc/transport-pipe/UnixSocket"
import { Effect } from "effect"
const prog = Effect.gen(function*() {
  const t = UnixSocket.make()
  const path = `unix:///tmp/effect-ipc-smoke-${process.pid}.sock`
  console.log("listen")
  const l = yield* t.listen(path)
  console.log("dial")
  const c = yield* t.dial(path)
  console.log("accept")
  const s = yield* l.accept
  console.log("send")
  for (let i = 0; i < 1000; i++) yield* c.send(new Uint8Array([i & 255, 2, 3]))
  console.log("recv")
  for (let i = 0; i < 1000; i++) {
    const got = yield* s.receive
    if (got[0] !== (i & 255)) throw new Error("bad")
  }
  console.log("big")
  yield* s.send(new Uint8Array(10_000_000))
  const big = yield* c.receive
  console.log(big.byteLength)
  yield* c.close
  console.log("closed")
  const e = yield* Effect.flip(s.receive)
  console.log(e.reason)
}).pipe(Effect.scoped)
Effect.runPromise(prog).then(() => console.log("done"), (e) => console.error("ERR", e))
