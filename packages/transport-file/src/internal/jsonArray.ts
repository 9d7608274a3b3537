/**
 * The top-level elements of a JSON array, as the exact text they have in
 * the file. Rewriting ipckit's message files keeps every element another
 * writer put there byte for byte (a `1.0` stays `1.0`, a 64-bit integer
 * keeps its digits), where parsing and re-serialising would change them.
 *
 * @internal
 */

/** Why a text is not a JSON array. */
export interface NotAnArray {
  readonly _tag: "NotAnArray"
  readonly why: string
}

const isSpace = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09

/**
 * The elements of the JSON array in `text` (an empty or blank text is an
 * empty array, as ipckit reads it). The text must be valid JSON: check it
 * with `JSON.parse` first; this only finds the boundaries.
 */
export const elements = (text: string): ReadonlyArray<string> | NotAnArray => {
  let i = 0
  const n = text.length
  const skip = () => {
    while (i < n && isSpace(text.charCodeAt(i))) i++
  }
  skip()
  if (i === n) return []
  if (text[i] !== "[") return { _tag: "NotAnArray", why: `the file holds a JSON ${kindOf(text[i]!)}, not an array` }
  i++
  const out: Array<string> = []
  skip()
  if (text[i] === "]") return out
  while (i < n) {
    skip()
    const start = i
    let depth = 0
    let inString = false
    for (; i < n; i++) {
      const c = text[i]!
      if (inString) {
        if (c === "\\") i++
        else if (c === "\"") inString = false
        continue
      }
      if (c === "\"") inString = true
      else if (c === "{" || c === "[") depth++
      else if (c === "}" || c === "]") {
        if (depth === 0) break
        depth--
      } else if (c === "," && depth === 0) break
    }
    let end = i
    while (end > start && isSpace(text.charCodeAt(end - 1))) end--
    out.push(text.slice(start, end))
    if (text[i] === "]") return out
    i++
  }
  return { _tag: "NotAnArray", why: "the array is not closed" }
}

const kindOf = (c: string): string =>
  c === "{" ? "object" : c === "\"" ? "string" : c === "t" || c === "f" ? "boolean" : c === "n" ? "null" : "number"

/**
 * A JSON array text as serde_json's `to_string_pretty` writes it (two-space
 * indent), from element texts that are already pretty at depth one.
 */
export const render = (items: ReadonlyArray<string>): string =>
  items.length === 0 ? "[]" : `[\n${items.map((item) => `  ${item}`).join(",\n")}\n]`

/** A value's pretty text at depth one of an array (its inner lines indented by two more spaces). */
export const prettyElement = (value: unknown): string => JSON.stringify(value, null, 2).split("\n").join("\n  ")
