/**
 * How strong a token the user gave is. It is weak when it uses fewer than 8
 * distinct characters; when its bits fall short of 128, estimated from left to
 * right: a character costs the bits of the smallest usual alphabet that holds
 * all the token's characters (digits, hex, one case of letters, letters and
 * digits, base64url, every token character), and a stretch of 6 or more that
 * repeats an earlier one (case aside) or walks along the alphabet, the digits
 * or a keyboard row, either way, costs only where it starts and its length;
 * or, whatever its length, when it is only one or two runs of one kind each
 * (digits, lowercase letters, capital letters, a capitalised word, other
 * characters): a number, a word, a word and a number. A random token of 16
 * bytes or more passes in hex or base64url (16 in hex fail about 1 time in
 * 14 000: they happen to hold such a stretch); a short one, a word, a pattern
 * padded with a few characters, or digits alone do not. An estimate only: a
 * long phrase of mixed words can pass.
 */

/** The bits a token must carry, as 16 random bytes do. */
export const REQUIRED_BITS = 128

/** Distinct characters a token must use (a random token of 22 or more has many more). */
const MIN_DISTINCT = 8

const alphabets: ReadonlyArray<readonly [name: string, pattern: RegExp, size: number]> = [
  ["0-9", /^[0-9]*$/, 10],
  ["0-9 a-f", /^[0-9a-f]*$/, 16],
  ["0-9 A-F", /^[0-9A-F]*$/, 16],
  ["a-z", /^[a-z]*$/, 26],
  ["A-Z", /^[A-Z]*$/, 26],
  ["0-9 a-z", /^[0-9a-z]*$/, 36],
  ["0-9 A-Z", /^[0-9A-Z]*$/, 36],
  // no row for letters of both cases alone: 16 random bytes in base64url are letters only about
  // 1 time in 100, and 22 of them counted as 52 would fall short of 128 bits
  ["A-Z a-z 0-9", /^[A-Za-z0-9]*$/, 62],
  ["A-Z a-z 0-9 _ -", /^[A-Za-z0-9_-]*$/, 64],
  ["A-Z a-z 0-9 . _ ~ -", /^[A-Za-z0-9._~-]*$/, 66]
]

/** Why `token` is weak (without showing it), or `undefined` when it is strong enough. */
export const weakness = (token: string): string | undefined => {
  const distinct = new Set(token).size
  if (distinct < MIN_DISTINCT) {
    return `it uses ${distinct} distinct character${distinct === 1 ? "" : "s"} (at least ${MIN_DISTINCT} are needed)`
  }
  const [name, , size] = alphabets.find(([, pattern]) => pattern.test(token)) ?? alphabets[alphabets.length - 1]!
  const { bits, patterned } = estimate(token, Math.log2(size))
  if (bits < REQUIRED_BITS) {
    const carried = `${token.length} characters of ${name} carry about ${Math.floor(bits)} bits` +
      `${patterned ? " counted so" : ""} (at least ${REQUIRED_BITS} are needed)`
    return patterned
      ? `it repeats itself or runs in sequence (as aaaaaa, abcdef, 654321, qwerty or a part of it again): ${carried}`
      : `${carried}`
  }
  const runs = runsOf(token)
  return runs.length <= 2
    ? `it is only ${runs.join(" then ")} (a word or a number is guessed whatever its length)`
    : undefined
}

/**
 * A pattern counts from this many characters on: a random token of 16 bytes in hex holds one this
 * long about 1 time in 14 000 (a shorter one, much more often), and any pattern makes it fall short.
 */
const MIN_PATTERN = 6

/** Rows a guesser walks along, either way: the alphabet, the digits, the keyboard's rows (letters of any case). */
const ROWS: ReadonlyArray<string> = [
  "abcdefghijklmnopqrstuvwxyz",
  "0123456789",
  "1234567890",
  "qwertyuiop",
  "asdfghjkl",
  "zxcvbnm"
]

/** How many characters from `at` walk along one of `ROWS`, one step at a time in one direction. */
const sequenceAt = (lower: string, at: number): number => {
  let longest = 1
  for (const row of ROWS) {
    const first = row.indexOf(lower[at]!)
    if (first < 0) continue
    for (const step of [1, -1]) {
      let length = 1
      while (at + length < lower.length && row[first + length * step] === lower[at + length]) length++
      if (length > longest) longest = length
    }
  }
  return longest
}

/** How many characters from `at` repeat ones that began earlier (case aside; the copy may run into itself: `aaaaaa`). */
const repeatAt = (lower: string, at: number): number => {
  let longest = 0
  for (let from = 0; from < at; from++) {
    let length = 0
    while (at + length < lower.length && lower[from + length] === lower[at + length]) length++
    if (length > longest) longest = length
  }
  return longest
}

/**
 * The bits `token` carries, read from left to right: a character costs the bits of the alphabet
 * (`charBits`); a stretch of `MIN_PATTERN` or more that repeats an earlier one, or walks along a row
 * (`ROWS`), costs only what says where it starts and how long it is. `patterned` when one was found.
 */
const estimate = (token: string, charBits: number): { readonly bits: number; readonly patterned: boolean } => {
  const lower = token.toLowerCase()
  let bits = 0
  let patterned = false
  let at = 0
  while (at < lower.length) {
    const repeat = repeatAt(lower, at)
    const sequence = sequenceAt(lower, at)
    const length = Math.max(repeat, sequence)
    if (length < MIN_PATTERN) {
      bits += charBits
      at++
      continue
    }
    patterned = true
    // a repeat: where its copy starts, its length, its case; a walk: its first character, length, direction
    bits += (repeat >= sequence ? Math.log2(at) : charBits) + Math.log2(length) + 1
    at += length
  }
  return { bits, patterned }
}

/** One run of characters of one kind: a capital letter followed by lowercase ones is one capitalised word. */
const RUN = /[0-9]+|[A-Z][a-z]+|[a-z]+|[A-Z]+|[^0-9A-Za-z]+/g

/** The kinds of the runs `token` is made of, in order ("digits", "lowercase letters", ...). */
const runsOf = (token: string): ReadonlyArray<string> =>
  Array.from(token.matchAll(RUN), ([run]) =>
    /^[0-9]/.test(run)
      ? "digits"
      : /^[A-Z][a-z]/.test(run)
      ? "a capitalised word"
      : /^[a-z]/.test(run)
      ? "lowercase letters"
      : /^[A-Z]/.test(run)
      ? "capital letters"
      : "other characters")
