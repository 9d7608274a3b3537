// Loaded with --import into every Node for Windows process of the Windows tests (the runner and the
// peers it starts, through NODE_OPTIONS): the workspace packages are symbolic links in
// node_modules, which Wine does not show as links, so Node would take their TypeScript sources for
// files under node_modules (which it does not strip); they resolve to packages/<name>/ instead.
// In the runner, `vitest` and `@effect/vitest` resolve to ./vitest-shim.mjs.
import * as Module from "node:module"

const shim = new URL("./vitest-shim.mjs", import.meta.url).href
const workspace = /\/node_modules\/@effect-ipc\/([^/]+)\//
Module.registerHooks({
  resolve: (specifier, context, next) => {
    if (specifier === "vitest" || specifier === "@effect/vitest") return { url: shim, shortCircuit: true }
    const resolved = next(specifier, context)
    return { ...resolved, url: resolved.url.replace(workspace, "/packages/$1/") }
  }
})
