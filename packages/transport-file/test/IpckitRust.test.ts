/**
 * ipckit compatibility against ipckit's own code: the seed's
 * `file_channel.rs` (unchanged, `fixtures/ipckit-rs/src/file_channel.rs`)
 * behind a small command line, built with Debian's rustc and cargo against
 * the serde and serde_json crates Debian packages (`/usr/share/cargo/registry`,
 * offline; `scripts/setup.sh` installs them). The binary is built once and
 * cached under `node_modules/.cache/effect-ipc-ipckit-rs/<hash of the sources>`.
 *
 * Both directions: ipckit's backend answers our frontend and its files read
 * back exactly; our backend writes files that ipckit reads message for
 * message, byte for byte as serde_json itself writes them (keys sorted,
 * numbers in serde's form), and never what serde_json cannot read.
 */
import { Ipckit, type Messages } from "@effect-ipc/transport-file"
import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import fc from "fast-check"
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as JsonArray from "../src/internal/jsonArray.ts"
import { fresh, run, spawn, tempRoot } from "./helpers.ts"

const root = tempRoot("ipckit-rs")
const fixture = Path.join(import.meta.dirname, "fixtures", "ipckit-rs")
const sources = ["Cargo.toml", "src/main.rs", "src/error.rs", "src/file_channel.rs"]
// Debian's toolchain, not a rustup one that may come first in PATH: CI machines have only this one
const CARGO = "/usr/bin/cargo"
const RUSTC = "/usr/bin/rustc"
const cacheRoot = Path.resolve(import.meta.dirname, "../../../node_modules/.cache/effect-ipc-ipckit-rs")

/** Builds the peer (or finds it built from the same sources by the same rustc); its path. */
const build = async (): Promise<string> => {
  if (!Fs.existsSync(CARGO) || !Fs.existsSync(RUSTC)) {
    throw new Error(`${CARGO} / ${RUSTC} missing: run scripts/setup.sh (Debian packages rustc, cargo, librust-serde-*)`)
  }
  const hash = Crypto.createHash("sha256")
  for (const file of sources) hash.update(file).update(Fs.readFileSync(Path.join(fixture, file)))
  hash.update(ChildProcess.execFileSync(RUSTC, ["--version"]))
  const binary = Path.join(cacheRoot, hash.digest("hex").slice(0, 16), "ipckit-peer")
  if (Fs.existsSync(binary)) return binary
  Fs.mkdirSync(cacheRoot, { recursive: true })
  const work = Fs.mkdtempSync(Path.join(cacheRoot, "build-"))
  try {
    for (const file of sources) {
      Fs.mkdirSync(Path.dirname(Path.join(work, "project", file)), { recursive: true })
      Fs.copyFileSync(Path.join(fixture, file), Path.join(work, "project", file))
    }
    Fs.mkdirSync(Path.join(work, "cargo-home"))
    Fs.writeFileSync(
      Path.join(work, "cargo-home", "config.toml"),
      [
        "[source.crates-io]",
        "replace-with = \"debian\"",
        "[source.debian]",
        "directory = \"/usr/share/cargo/registry\"",
        "[net]",
        "offline = true"
      ].join("\n")
    )
    await new Promise<void>((resolve, reject) => {
      ChildProcess.execFile(
        CARGO,
        ["build", "--release", "--offline", "--quiet"],
        {
          cwd: Path.join(work, "project"),
          env: {
            ...process.env,
            CARGO_HOME: Path.join(work, "cargo-home"),
            CARGO_TARGET_DIR: Path.join(work, "target"),
            RUSTC
          }
        },
        (error, _stdout, stderr) => error === null ? resolve() : reject(new Error(`cargo build failed: ${stderr}`))
      )
    })
    Fs.mkdirSync(Path.dirname(binary), { recursive: true })
    Fs.copyFileSync(Path.join(work, "target", "release", "ipckit-peer"), `${binary}.tmp`)
    Fs.chmodSync(`${binary}.tmp`, 0o755)
    Fs.renameSync(`${binary}.tmp`, binary)
  } finally {
    Fs.rmSync(work, { recursive: true, force: true })
  }
  return binary
}

let binary = ""
beforeAll(async () => {
  binary = await build()
}, 600_000)

/** Runs the Rust peer to completion: its exit code and output lines. */
const peer = (...args: ReadonlyArray<string>) => run(spawn(binary, args))

/**
 * A float that serde_json (default features, as ipckit builds it: no
 * `float_roundtrip`) parses exactly: at most 16 significant digits and a
 * power of ten it holds exactly (|exponent| <= 22). Longer floats may come
 * back one unit in the last place off (see the last test).
 */
const exactFloat = fc.tuple(fc.integer({ min: -(2 ** 53 - 1), max: 2 ** 53 - 1 }), fc.integer({ min: -22, max: 22 }))
  .map(([m, k]) => Number(`${m}e${k}`))

/** JSON values: strings and keys of any code points, integers, floats serde_json parses exactly. */
const jsonValue = fc.letrec((tie) => ({
  value: fc.oneof(
    { maxDepth: 3 },
    fc.string({ unit: "binary", maxLength: 12 }),
    fc.integer(),
    fc.maxSafeInteger(),
    exactFloat,
    fc.boolean(),
    fc.constant(null),
    fc.array(tie("value"), { maxLength: 4 }),
    fc.dictionary(fc.string({ unit: "binary", maxLength: 8 }), tie("value"), { maxKeys: 4 })
  )
})).value

/** Numbers and keys where serde_json's form differs from JavaScript's (or from insertion order). */
const tricky = {
  zeta: 1,
  alpha: [0.1, 1e21, 1e-7, 1e16, 1e15, 2 ** 64, -(2 ** 63), 2 ** 53 + 2, 5e-324, -0, 1.5, 123.456e-10],
  "é": { b: null, a: true, "10": 2, "9": 1 },
  "\u{1F600}": "an astral key: after U+FFFF in UTF-8 order, before it in UTF-16 order",
  "\uffff": "last BMP code point",
  text: "quotes \" backslash \\ controls \u0000\u001f\n\t del \u007f é 😀"
}

describe("ipckit compatibility against ipckit's own Rust code (serde_json)", () => {
  it.live(
    "ipckit's backend answers our frontend; what it writes reads back exactly, in serde_json's own form",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const backend = yield* spawn(binary, [dir, "backend", "serve"])
        yield* backend.waitFor((l) => l === "ready")
        const frontend = yield* Ipckit.frontend(dir)
        assert.deepStrictEqual((yield* frontend.request("add", { a: 2, b: 40 }, "10 seconds")).payload, { sum: 42 })
        const echoed = yield* frontend.request("echo", tricky, "10 seconds")
        assert.deepStrictEqual(echoed.payload, tricky)
        assert.strictEqual((yield* frontend.request("nope", {}, "10 seconds")).error, "unknown method: nope")

        // the file as serde_json wrote it: keys sorted by code point, numbers in ryu's form; our writer
        // makes the same bytes of the same values
        const items = JsonArray.elements(Fs.readFileSync(Ipckit.paths(dir).messages("backend"), "utf8"))
        assert.isTrue(Array.isArray(items))
        const echo = (items as ReadonlyArray<string>).find((item) => item.includes(echoed.id))!
        // (1e16 and 1e15 are integers to JavaScript: we send them as such, and serde_json keeps them so)
        assert.include(echo, "\"alpha\": [\n        0.1,\n        1e21,\n        1e-7,\n        10000000000000000,\n")
        assert.include(
          echo,
          "        1000000000000000,\n        1.8446744073709552e19,\n        -9223372036854775808,\n"
        )
        assert.include(
          echo,
          "        9007199254740994,\n        5e-324,\n        -0.0,\n        1.5,\n        1.23456e-8\n"
        )
        const keys = ["alpha", "text", "zeta", "é", "\uffff", "\u{1F600}"].map((k) => echo.indexOf(`"${k}": `))
        assert.deepStrictEqual(keys.toSorted((a, b) => a - b), keys, "payload keys sorted by code point")
        for (const item of items as ReadonlyArray<string>) {
          assert.strictEqual(JsonArray.prettyElement(JSON.parse(item), true), item)
        }
        yield* frontend.sendEvent("shutdown", {})
        assert.strictEqual(yield* backend.exit, 0)
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "our backend writes, ipckit reads every message exactly; our file is byte for byte what serde_json writes",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const backend = yield* Ipckit.backend(dir)
        const payloads = [
          tricky,
          ...fc.sample(jsonValue, { seed: 15, numRuns: 90 })
        ]
        const sent: Array<Messages.Message> = [
          ...payloads.map((payload, i): Messages.Message => ({
            id: `m${i}`,
            timestamp: 1000 + i,
            type: "event",
            method: `e${i}`,
            payload: payload as Messages.Json
          })),
          { id: "r", timestamp: 2000, type: "request", method: "m", payload: { b: 1, a: 2 } },
          { id: "x", timestamp: 2001, type: "response", reply_to: "r", payload: null, error: "no" }
        ]
        for (const message of sent) yield* backend.send(message)

        const dump = yield* peer(dir, "frontend", "dump")
        assert.strictEqual(dump.code, 0, dump.lines.join("\n"))
        assert.deepStrictEqual(dump.lines.map((line) => JSON.parse(line) as unknown), sent)

        // ipckit rewrites the whole file on its next send (parse, append, to_string_pretty): ours stays as it was
        const file = Ipckit.paths(dir).messages("backend")
        const before = JsonArray.elements(Fs.readFileSync(file, "utf8")) as ReadonlyArray<string>
        const theirs = yield* peer(dir, "backend", "send", "{\"z\": 1.0, \"a\": -0.0}")
        assert.strictEqual(theirs.code, 0, theirs.lines.join("\n"))
        const after = Fs.readFileSync(file, "utf8")
        const items = JsonArray.elements(after) as ReadonlyArray<string>
        assert.strictEqual(items.length, before.length + 1)
        items.slice(0, -1).forEach((item, i) => assert.strictEqual(item, before[i], `message ${i}`))
        assert.strictEqual(after, JsonArray.render(items))
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "ipckit's own parser (serde_json without float_roundtrip) may move a 17-digit float by one unit",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const backend = yield* Ipckit.backend(dir)
        const floats = [-9.16559937982073e+282, 1.7976931348623127e+308, 0.1, 5e-324, 2 ** 64, 1530162200.4980416]
        yield* backend.sendEvent("floats", floats)
        const dump = yield* peer(dir, "frontend", "dump")
        assert.strictEqual(dump.code, 0, dump.lines.join("\n"))
        const got = (JSON.parse(dump.lines[0]!) as Messages.Message).payload as ReadonlyArray<number>
        // what we wrote is the shortest exact form (JavaScript reads it back exactly); serde_json's
        // default parser is off by one unit in the last place on the first two
        assert.deepStrictEqual(got.slice(2), floats.slice(2))
        assert.notStrictEqual(got[0], floats[0])
        assert.strictEqual(got[0], -9.165599379820729e+282)
        assert.notStrictEqual(got[1], floats[1])
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "what serde_json cannot read (a lone surrogate, nesting past its limit) breaks ipckit: we never write it",
    () =>
      Effect.gen(function*() {
        // written by hand, a lone surrogate stops ipckit's reader on the whole file
        const dir = fresh(root)
        Fs.mkdirSync(dir, { mode: 0o700 })
        Fs.writeFileSync(
          Ipckit.paths(dir).messages("backend"),
          "[{\"id\": \"a\", \"timestamp\": 1, \"type\": \"event\", \"payload\": \"\\ud800\"}]"
        )
        const broken = yield* peer(dir, "frontend", "dump")
        assert.strictEqual(broken.code, 3)
        assert.match(broken.lines[0]!, /^error: deserialization: .*(surrogate|hex escape)/)

        // our writer refuses it (Encode) and the file stays readable to ipckit
        const ours = fresh(root)
        const backend = yield* Ipckit.backend(ours)
        yield* backend.sendEvent("fine", { s: "\ud83d\ude00" })
        const lone = yield* Effect.flip(backend.sendEvent("lone", { s: "\ud800" }))
        assert.strictEqual(lone.reason._tag, "Encode")
        // the deepest payload serde_json reads: 125 nested arrays; one more is refused
        const nest = (n: number): Messages.Json => n === 0 ? 0 : [nest(n - 1)]
        yield* backend.sendEvent("deep", nest(125))
        const deeper = yield* Effect.flip(backend.sendEvent("deeper", nest(126)))
        assert.strictEqual(deeper.reason._tag, "Encode")
        const dump = yield* peer(ours, "frontend", "dump")
        assert.strictEqual(dump.code, 0, dump.lines.join("\n"))
        assert.deepStrictEqual(dump.lines.map((l) => (JSON.parse(l) as Messages.Message).method), ["fine", "deep"])

        // and serde_json really stops one level deeper (written by hand)
        const edge = fresh(root)
        Fs.mkdirSync(edge, { mode: 0o700 })
        Fs.writeFileSync(
          Ipckit.paths(edge).messages("backend"),
          `[{"id": "a", "timestamp": 1, "type": "event", "payload": ${JSON.stringify(nest(126))}}]`
        )
        const tooDeep = yield* peer(edge, "frontend", "dump")
        assert.strictEqual(tooDeep.code, 3)
        assert.match(tooDeep.lines[0]!, /recursion limit/)
      }).pipe(Effect.scoped),
    120_000
  )
})
