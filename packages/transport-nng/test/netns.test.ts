/**
 * Across machines: a server and a client in two network namespaces of this
 * machine, joined by a veth pair, talking nng over TCP. The test takes the
 * link down and up under a stream of requests and checks the bookkeeping of
 * both sides: every request is answered once or fails with a typed error,
 * none is handled twice, and the client reconnects when the link is back.
 *
 * Needs root (network namespaces) and iproute2; it makes its own namespaces,
 * addresses (10.200.x.1-2/30, inside them only) and link, and removes them
 * even when it fails.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Child from "./fixtures/process.ts"

const run = (...args: ReadonlyArray<string>): Effect.Effect<void, Error> =>
  Effect.callback<void, Error>((resume) => {
    ChildProcess.execFile("ip", args, (error, _stdout, stderr) =>
      resume(error === null ? Effect.void : Effect.fail(new Error(`ip ${args.join(" ")}: ${stderr || error.message}`))))
  })

const hasIp = ChildProcess.spawnSync("ip", ["-V"]).status === 0
const isRoot = process.getuid?.() === 0

/** A namespace, deleted (with the links inside it) when the scope closes. */
const namespace = (name: string): Effect.Effect<string, Error, Scope.Scope> =>
  Effect.acquireRelease(Effect.as(run("netns", "add", name), name), () => Effect.ignore(run("netns", "del", name)))

/** Runs a fixture inside a namespace. */
const inNamespace = (ns: string, args: ReadonlyArray<string>) =>
  Child.spawn("ip", ["netns", "exec", ns, process.execPath, ...Child.nodeArgs("peer.ts", args)])

describe.skipIf(!hasIp || !isRoot)("across machines (two network namespaces)", () => {
  it.live(
    "the client reconnects after the link goes down and up; nothing is duplicated or lost untyped",
    () =>
      Effect.gen(function*() {
        const tag = `${process.pid % 100_000}`
        const subnet = `10.200.${process.pid % 250}`
        const server = yield* namespace(`eipc-s-${tag}`)
        const client = yield* namespace(`eipc-c-${tag}`)
        const [serverLink, clientLink] = [`eipcs${tag}`, `eipcc${tag}`]
        yield* run(
          "link",
          "add",
          serverLink,
          "netns",
          server,
          "type",
          "veth",
          "peer",
          "name",
          clientLink,
          "netns",
          client
        )
        yield* run("-n", server, "addr", "add", `${subnet}.1/30`, "dev", serverLink)
        yield* run("-n", client, "addr", "add", `${subnet}.2/30`, "dev", clientLink)
        for (const [ns, link] of [[server, serverLink], [client, clientLink]] as const) {
          yield* run("-n", ns, "link", "set", link, "up")
          yield* run("-n", ns, "link", "set", "lo", "up")
          // a connection with unacknowledged data gives up after ~3 s without a link (the default is ~15 min),
          // so that the outage breaks it and the client must reconnect; the setting is the namespace's own
          yield* Effect.promise(() =>
            new Promise((resolve) =>
              ChildProcess.execFile(
                "ip",
                ["netns", "exec", ns, "sh", "-c", "echo 3 > /proc/sys/net/ipv4/tcp_retries2"],
                resolve
              )
            )
          )
        }
        const address = `tcp://${subnet}.1:5555`
        const rep = yield* inNamespace(server, ["rep", address])
        yield* rep.waitFor((line) => line === "ready")
        const requests = yield* inNamespace(client, ["requests", address])
        const oks = () => requests.lines.filter((line) => line.startsWith("ok ")).length

        // requests flow
        yield* requests.waitFor((line) => line === "ok 10")
        // the link goes down for 5 s, then comes back
        yield* run("-n", client, "link", "set", clientLink, "down")
        const downAt = requests.lines.length
        yield* Effect.sleep("5 seconds")
        yield* run("-n", client, "link", "set", clientLink, "up")
        const okBefore = oks()
        yield* Effect.gen(function*() {
          while (oks() < okBefore + 20) yield* Effect.sleep("50 millis")
        }).pipe(Effect.timeout("20 seconds"))
        requests.process.stdin!.end()
        yield* requests.exited

        // the bookkeeping of both sides
        const outcome = new Map<number, string>()
        for (const line of requests.lines) {
          const [what, n, reason] = line.split(" ")
          assert.isFalse(outcome.has(Number(n)), `one outcome per request: ${line}`)
          outcome.set(Number(n), what === "ok" ? "ok" : `${what} ${reason}`)
        }
        const sent = Math.max(...outcome.keys())
        for (let n = 1; n <= sent; n++) assert.isTrue(outcome.has(n), `request ${n} has an outcome`)
        const handled = rep.lines.filter((line) => line.startsWith("handled ")).map((line) =>
          Number(line.split(" ")[1])
        )
        assert.strictEqual(new Set(handled).size, handled.length, "no request was handled twice")
        for (const [n, result] of outcome) {
          if (result === "ok") assert.include(handled, n, `request ${n} was answered by the server`)
          else assert.oneOf(result, ["error Timeout", "error ConnectionLost"], `request ${n} failed typed`)
        }
        // the outage was seen, and the client reconnected after it
        const during = requests.lines.slice(downAt).filter((line) => line.startsWith("error "))
        assert.isAbove(during.length, 0, "requests failed (typed) while the link was down")
        assert.isAtLeast(oks() - okBefore, 20, "requests succeed again once the link is back")
      }).pipe(Effect.scoped),
    60_000
  )
})
