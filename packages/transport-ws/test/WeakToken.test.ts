/**
 * A token the user gives (`token`, or the address's `?token=`) must be as
 * strong as a generated one (128 bits or more, estimated from its length and
 * the characters it uses): a short or low-entropy one fails `listen` with
 * `InvalidOption` saying why (never showing the token), unless
 * `allowWeakToken` is set.
 */
import * as Transport from "@effect-ipc/core/Transport"
import * as Ws from "@effect-ipc/transport-ws"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as fc from "fast-check"
import * as Crypto from "node:crypto"
import { weakness } from "../src/internal/strength.ts"
import { freshAddress, sweepTokenFiles } from "./helpers.ts"

afterAll(sweepTokenFiles)

const weak: ReadonlyArray<readonly [string, string, string]> = [
  // [the token, what it is, what the error must name]
  ["s3cret-token", "short", "12 characters"],
  ["a".repeat(64), "one character repeated", "1 distinct character"],
  ["ab".repeat(40), "a pattern", "2 distinct characters"],
  ["0123456789".repeat(3), "30 digits", "of 0-9"],
  // fixed, not drawn: random ones are sometimes refused for another reason (fewer than 8 distinct
  // characters, or digits only), which the message then names instead
  ["5e0c9a7b3d1f8e2a64c0b9d7", "12 random bytes in hex", "of 0-9 a-f"],
  ["correcthorsebatterystaple", "lowercase words", "of a-z"],
  // long enough for 128 bits were its characters random, but a pattern repeated
  ["0123456789".repeat(4), "40 digits counting up, again and again", "repeats"],
  ["abcdefgh".repeat(5), "8 letters repeated", "repeats"],
  [
    "3f9a61c0d7e2b845".repeat(3).slice(0, 40),
    "8 random bytes in hex, repeated and cut short",
    "repeats"
  ],
  // long enough for 128 bits by length and alphabet, but a run, a sequence, a keyboard row or a repeat padded
  // with a few characters (each passed the estimate that counted only a repeated prefix)
  ["0000000000000000000000000000000000000000_ABCDEFG", "a run of zeros and a few capitals", "runs in sequence"],
  ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.abcdefgh", "a run and the alphabet's start", "runs in sequence"],
  ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-12345678", "a run and digits counting up", "runs in sequence"],
  ["password-12345678-PASSWORD-87654321", "a word, digits up, the word again, digits down", "runs in sequence"],
  ["Abcdefgh-12345678-Abcdefgh-12345678", "two sequences, repeated", "runs in sequence"],
  ["ABCDEFGHabcdefgh01234567ABCDEFGHabcdefgh01234567", "three sequences, repeated", "runs in sequence"],
  ["qwertyuiop-asdfghjkl-zxcvbnm-1234567890", "the keyboard's rows", "runs in sequence"],
  // long enough for 128 bits by length and alphabet, but a word or a number, whatever its length
  ["antidisestablishmentarianism", "a long word", "only lowercase letters"],
  ["pneumonoultramicroscopicsilicovolcanoconiosis", "a longer word", "only lowercase letters"],
  ["Supercalifragilisticexpialidocious", "a capitalised word", "only a capitalised word"],
  ["ANTIDISESTABLISHMENTARIANISM", "a word in capitals", "only capital letters"],
  ["5106151354992647169346871586451714484592", "40 random digits", "only digits"],
  ["3141592653589793238462643383279502884197", "40 digits of pi", "only digits"],
  ["Antidisestablishmentarianism1984", "a word and a number", "only a capitalised word then digits"],
  ["1984antidisestablishmentarianism", "a number and a word", "only digits then lowercase letters"]
]

const strong: ReadonlyArray<readonly [string, string]> = [
  [Ws.TokenFile.generate(), "a generated token"],
  [Crypto.randomBytes(16).toString("base64url"), "16 random bytes in base64url"],
  [Crypto.randomBytes(16).toString("hex"), "16 random bytes in hex"],
  // 16 random bytes in base64url that happen to be letters only (about 1 in 100 are): still strong
  ["qXbTzRkWmLpVnHcJdGfYsE", "16 random bytes in base64url, letters only"],
  // 16 random bytes in hex that end as they begin (1 in 16 do): they repeat nothing
  ["c41e9b07d3a85f62e19c0b7a4d38f2ec", "16 random bytes in hex, ending with its first character"],
  ["9f3b27d6e0a4c18b55e2d09f73a6c9f3", "16 random bytes in hex, ending with its first 4 characters"],
  [Crypto.randomUUID() + Crypto.randomUUID(), "two UUIDs"],
  [Crypto.randomBytes(32).toString("base64url"), "32 random bytes in base64url"],
  [Crypto.randomBytes(32).toString("hex"), "32 random bytes in hex (64 characters)"],
  // 32 random bytes in base64url that happen to be letters only (1 in 10,000 are): many runs of each case
  ["kQmZrTbWxHcNvLpJdGsYfAeUiOqXzKwRtPyBnMhVgCj", "32 random bytes in base64url, letters only"],
  [
    "3b5d8f0a2c4e6a8c0e2b4d6f8a1c3e5b7d9f1a3c5e7b9d1f3a5c7e9b1d3f5a7c",
    "32 bytes in hex, alternating digits and letters"
  ]
]

describe("a token the user gives", () => {
  it.effect("a weak one fails listen with InvalidOption naming why, in the options or the address", () =>
    Effect.gen(function*() {
      for (const [token, what, why] of weak) {
        for (const where of ["option", "address"] as const) {
          const address = freshAddress("weak")
          const error = yield* Effect.flip(
            where === "option"
              ? Ws.WsServer.listen(address, { tokenFile: false, token })
              : Ws.WsServer.listen(`${address}?token=${token}`, { tokenFile: false })
          )
          assert.strictEqual(error.reason._tag, "InvalidOption", `${what} (${where}): ${error.message}`)
          assert.include(error.message, why, `${what} (${where})`)
          assert.include(error.message, "allowWeakToken", `${what} (${where})`)
          assert.notInclude(error.message, token, `${what} (${where}): the token is not shown`)
        }
      }
    }).pipe(Effect.scoped))

  it.live("a strong one is served; a weak one with allowWeakToken is served", () =>
    Effect.gen(function*() {
      const tokens = [
        ...strong.map(([token]) => [token, false] as const),
        ...weak.map(([token]) => [token, true] as const)
      ]
      for (const [token, allowWeakToken] of tokens) {
        yield* Effect.scoped(Effect.gen(function*() {
          const address = freshAddress("strong")
          const listener = yield* Ws.WsServer.listen(address, { tokenFile: false, token, allowWeakToken })
          assert.strictEqual(listener.token, token)
          yield* Effect.forkScoped(Transport.serve(listener, (c) => Effect.forever(Effect.flatMap(c.receive, c.send))))
          const channel = yield* Ws.WsClient.dial(address, { token })
          yield* channel.send(new Uint8Array([7]))
          assert.strictEqual((yield* channel.receive)[0], 7, token)
        }))
      }
    }))

  // a number (JavaScript, or configuration read by hand) was a TypeError defect: "is not iterable"; a
  // Buffer (a token file read without an encoding) was shown in the error, as text
  it.effect("a token that is not a string: InvalidOption on listen and dial, the token not shown", () =>
    Effect.gen(function*() {
      const tokens = [
        [1234567890123456, "1234567890123456"],
        [Buffer.from("Kx81SecretTokenText"), "Kx81SecretTokenText"]
      ] as const
      for (const [given, text] of tokens) {
        const token = given as unknown as string
        const listened = yield* Effect.flip(Ws.WsServer.listen(freshAddress("number"), { tokenFile: false, token }))
        assert.strictEqual(listened.reason._tag, "InvalidOption", listened.message)
        assert.notInclude(listened.message, text)
        const dialled = yield* Effect.flip(Ws.WsClient.dial(freshAddress("number"), { token }))
        assert.strictEqual(dialled.reason._tag, "InvalidOption", dialled.message)
        assert.notInclude(dialled.message, text)
        assert.include(dialled.message, "token (")
      }
    }).pipe(Effect.scoped))

  // a phrase with spaces, or standard base64, failed as InvalidAddress with the characters allowed unsaid in the README
  it.effect("characters a subprotocol cannot carry: InvalidOption in the options, InvalidAddress in the address", () =>
    Effect.gen(function*() {
      const phrase = "correct horse battery staple orbit gravel"
      const base64 = `${Crypto.randomBytes(30).toString("base64")}+/=`
      for (const token of [phrase, base64]) {
        const option = yield* Effect.flip(Ws.WsServer.listen(freshAddress("chars"), { tokenFile: false, token }))
        assert.strictEqual(option.reason._tag, "InvalidOption", option.message)
        assert.include(option.detail, "the token option is 1-512 of A-Z a-z 0-9 . _ ~ -")
        assert.notInclude(option.message, token)
        const dialled = yield* Effect.flip(Ws.WsClient.dial(freshAddress("chars"), { token }))
        assert.strictEqual(dialled.reason._tag, "InvalidOption", dialled.message)
      }
      const inAddress = yield* Effect.flip(
        Ws.WsServer.listen(`${freshAddress("chars")}?token=a%20b`, { tokenFile: false })
      )
      assert.strictEqual(inAddress.reason._tag, "InvalidAddress", inAddress.message)
      assert.include(inAddress.detail, "a token is 1-512 of A-Z a-z 0-9 . _ ~ -")
      // the same phrase with its words joined by - passes (the README's "a long phrase of words")
      const joined = yield* Ws.WsServer.listen(freshAddress("chars"), {
        tokenFile: false,
        token: phrase.replaceAll(" ", "-")
      })
      assert.strictEqual(joined.token, phrase.replaceAll(" ", "-"))
    }).pipe(Effect.scoped))

  it("a random token of 16 bytes or more is strong in hex and base64url (fast-check, fixed seed)", () => {
    // uniform draws (no bias to small values: a token is random bytes), as many as a user would make
    fc.assert(
      fc.property(fc.noBias(fc.uint8Array({ minLength: 16, maxLength: 48 })), (bytes) => {
        for (const encoding of ["hex", "base64url"] as const) {
          const token = Buffer.from(bytes).toString(encoding)
          assert.isUndefined(weakness(token), `${bytes.length} bytes in ${encoding}: ${token}`)
        }
      }),
      { seed: 20261130, numRuns: 3000 }
    )
  })
})
