/**
 * How strong a token the user gave is. It is weak when it uses fewer than 8
 * distinct characters; when its bits, estimated as its length (of its first
 * characters only, if it repeats them) times the bits of the smallest usual
 * alphabet that holds all its characters (digits, hex, one case of letters,
 * letters and digits, base64url, every token character), fall short of 128;
 * or, whatever its length, when it is only one or two runs of one kind each
 * (digits, lowercase letters, capital letters, a capitalised word, other
 * characters): a number, a word, a word and a number. A random token of 16
 * bytes or more passes in hex or base64url; a short one, a word, a pattern or
 * digits alone do not. An estimate only: a long phrase of mixed words can pass.
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
  // a token that repeats its first characters carries only theirs
  const period = periodOf(token)
  const bits = Math.floor(period * Math.log2(size))
  const carried = `${period} characters of ${name} carry at most ${bits} bits (at least ${REQUIRED_BITS} are needed)`
  if (bits < REQUIRED_BITS) {
    return period < token.length
      ? `it repeats its first ${period} characters: ${carried}`
      : carried
  }
  const runs = runsOf(token)
  return runs.length <= 2
    ? `it is only ${runs.join(" then ")} (a word or a number is guessed whatever its length)`
    : undefined
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

/**
 * The length of the shortest prefix that `token` repeats at least twice (the last repetition may be
 * cut short), or its length: a token that only ends as it begins (a random one of 32 hex
 * characters does 1 time in 16) repeats nothing.
 */
const periodOf = (token: string): number => {
  for (let period = 1; period * 2 <= token.length; period++) {
    let repeats = true
    for (let i = period; i < token.length && repeats; i++) repeats = token[i] === token[i - period]
    if (repeats) return period
  }
  return token.length
}
