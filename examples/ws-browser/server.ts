/**
 * The browser example's daemon: serves the demo RpcGroup over ws:// and the
 * page that calls it over http://, both on 127.0.0.1. The ws:// listener is
 * safe by default (loopback only, a secret token, no page origins) and is
 * told one origin: this server's page. It prints the page's address, with the
 * ws:// address and its token in the fragment, as Jupyter prints its URL:
 *
 *   node server.ts                    WS_PORT=8765 PAGE_PORT=8766 node server.ts
 *   page: http://127.0.0.1:8766/#ws=ws%3A%2F%2F127.0.0.1%3A8765%2Fdemo%3Ftoken%3D...
 *
 * Open that address in a browser. Ctrl-C stops it (the token file goes too).
 */
import * as IpcRpc from "@effect-ipc/core/IpcRpc"
import { TokenFile, WsAddress, WsTransport } from "@effect-ipc/transport-ws"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { DemoApi, DemoHandlers } from "effect-ipc/DemoApi"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as RpcServer from "effect/rpc/RpcServer"
import * as Esbuild from "esbuild"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Path from "node:path"

const here = import.meta.dirname
const wsPort = Number(process.env["WS_PORT"] ?? 8765)
const pagePort = Number(process.env["PAGE_PORT"] ?? 8766)
const origin = `http://127.0.0.1:${pagePort}`
const token = TokenFile.generate()
const address = WsAddress.format({ host: "127.0.0.1", port: wsPort, path: "/demo" })

/** The page's script, bundled for the browser (in this repository, from the TypeScript sources). */
const bundle = Effect.promise(() =>
  Esbuild.build({
    entryPoints: [Path.join(here, "page.ts")],
    bundle: true,
    platform: "browser",
    format: "esm",
    write: false,
    conditions: ["@effect-ipc/source"],
    logLevel: "warning"
  })
).pipe(Effect.map((result) => result.outputFiles[0]!.text))

/** Serves index.html and page.js at `origin`; closed with the scope. */
const pageServer = (script: string) =>
  Effect.acquireRelease(
    Effect.callback<Http.Server>((resume) => {
      const html = Fs.readFileSync(Path.join(here, "index.html"))
      const server = Http.createServer((req, res) => {
        const [type, body] = req.url === "/page.js" ? ["text/javascript", script] : ["text/html", html]
        res.writeHead(200, { "Content-Type": `${type}; charset=utf-8` })
        res.end(body)
      })
      server.listen(pagePort, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.callback<void>((resume) => {
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
  )

// the demo RpcGroup at `address`; only this server's page may connect, and only with the token
const Server = RpcServer.layer(DemoApi).pipe(
  Layer.provide(DemoHandlers),
  Layer.provide(IpcRpc.layerServerProtocol(address)),
  Layer.provide(IpcRpc.layerSerialization),
  Layer.provide(WsTransport.layer({ token, allowedOrigins: [origin] }))
)

const program = Effect.gen(function*() {
  yield* pageServer(yield* bundle)
  yield* Layer.launch(Server.pipe(Layer.tap(() =>
    Effect.sync(() =>
      // the token is printed once, for the user to open the page (like Jupyter); it is never logged
      console.log(
        `page: ${origin}/#ws=${
          encodeURIComponent(WsAddress.format({ host: "127.0.0.1", port: wsPort, path: "/demo" }, token))
        }`
      )
    )
  )))
})

NodeRuntime.runMain(Effect.scoped(program))
