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

/**
 * The deepest nesting serde_json reads back: its recursion limit of 128
 * counts the file's array and the message object, so a payload may nest 125
 * levels (measured against the real serde_json in `IpckitRust.test.ts`).
 */
export const MAX_DEPTH = 127

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

/** UTF-8 byte order (Rust's `String` order, which sorts serde_json's maps): code points, not UTF-16 units. */
const byCodePoint = (a: string, b: string): number => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"))

/**
 * A number as serde_json writes it: integers that fit `u64` / `i64` in
 * plain digits, every other number (and -0) as an `f64` in ryu's shortest
 * form (`1.0`, `1e21`, `1.5e-7`, `-0.0`), which is what the value becomes
 * when an ipckit process re-serialises the file.
 */
export const serdeNumber = (n: number): string => {
  if (Object.is(n, -0)) return "-0.0"
  if (Number.isInteger(n) && n >= -(2 ** 63) && n < 2 ** 64) return BigInt(n).toString()
  const [mantissa, exponent] = n.toExponential().split("e") as [string, string]
  const negative = mantissa.startsWith("-")
  const digits = mantissa.replace("-", "").replace(".", "")
  const length = digits.length
  // the decimal point sits `point` digits from the start of `digits`
  const point = Number(exponent) + 1
  let text: string
  if (point >= length && point <= 16) text = `${digits}${"0".repeat(point - length)}.0`
  else if (point > 0 && point <= 16) text = `${digits.slice(0, point)}.${digits.slice(point)}`
  else if (point > -5 && point <= 0) text = `0.${"0".repeat(-point)}${digits}`
  else if (length === 1) text = `${digits}e${point - 1}`
  else text = `${digits[0]}.${digits.slice(1)}e${point - 1}`
  return negative ? `-${text}` : text
}

/** Why a value cannot go into a file that serde_json reads back (`undefined`: it can). */
export interface Unwritable {
  readonly _tag: "Unwritable"
  readonly why: string
}

const unwritable = (why: string): Unwritable => ({ _tag: "Unwritable", why })

const quote = (text: string): string | Unwritable =>
  LONE_SURROGATE.test(text)
    ? unwritable(`the string ${JSON.stringify(text.slice(0, 40))} holds a lone surrogate (not Unicode text)`)
    : JSON.stringify(text)

/** `value` in serde_json's pretty format at `indent`; objects' keys sorted unless `keepOrder` (a struct's fields). */
const pretty = (value: unknown, indent: string, depth: number, keepOrder: boolean): string | Unwritable => {
  if (value === null) return "null"
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false"
    case "number":
      return Number.isFinite(value) ? serdeNumber(value) : unwritable(`${value} is not a JSON number`)
    case "string":
      return quote(value)
    case "object":
      break
    default:
      return unwritable(`a ${typeof value} is not a JSON value`)
  }
  if (depth > MAX_DEPTH) return unwritable(`nested deeper than ${MAX_DEPTH} levels (serde_json's limit)`)
  const inner = `${indent}  `
  const lines: Array<string> = []
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]"
    for (const item of value) {
      const text = pretty(item, inner, depth + 1, false)
      if (typeof text !== "string") return text
      lines.push(`${inner}${text}`)
    }
    return `[\n${lines.join(",\n")}\n${indent}]`
  }
  const record = value as Record<string, unknown>
  const keys = Object.keys(record)
  if (keys.length === 0) return "{}"
  if (!keepOrder) keys.sort(byCodePoint)
  for (const key of keys) {
    const name = quote(key)
    if (typeof name !== "string") return name
    const text = pretty(record[key], inner, depth + 1, false)
    if (typeof text !== "string") return text
    lines.push(`${inner}${name}: ${text}`)
  }
  return `{\n${lines.join(",\n")}\n${indent}}`
}

/**
 * A value's text at depth one of an array, exactly as serde_json's
 * `to_string_pretty` writes it: two-space indent, object keys sorted (a
 * `serde_json::Value`'s map is ordered), numbers as `serdeNumber`; a
 * struct's fields (`keepOrder`, the message itself) stay in their order.
 * `Unwritable` for what serde_json would not read back: a lone surrogate
 * (JavaScript strings may hold one, JSON text may not), a number that is
 * not finite, nesting past serde_json's limit.
 */
export const prettyElement = (value: unknown, keepOrder = false): string | Unwritable =>
  pretty(value, "  ", 2, keepOrder)
