/** Temporary probe (deleted after use). */
import * as Effect from "effect/Effect"
import { connectRpc, openUnix } from "./contenders.ts"
import type { Row } from "./report.ts"
const [mode, address, nArg] = process.argv.slice(2)
const n = Number(nArg)
const row: Row = { size: 64, key: "unix", transport: "x", errors: [], warnings: [] }
if (mode === "channel") {
  const c = await openUnix(row, address!, address!)
  await c.pingPong(n, 0)
  await new Promise((r) => setTimeout(r, 300))
  const t0 = performance.now()
  await c.pingPong(n, 0)
  console.log("per rt us", ((performance.now() - t0) * 1000 / n).toFixed(1))
  await c.close()
} else {
  const { client, close } = await connectRpc(address!)
  const call = client.Add({ a: 1, b: 2 })
  const loop = Effect.gen(function*() { for (let i = 0; i < n; i++) yield* call })
  await Effect.runPromise(loop)
  await new Promise((r) => setTimeout(r, 300))
  const t0 = performance.now()
  await Effect.runPromise(loop)
  console.log("per call us", ((performance.now() - t0) * 1000 / n).toFixed(1))
  await close()
}
process.exit(0)
