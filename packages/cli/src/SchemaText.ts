/**
 * A schema's failure as a user reads it: each problem as the field it concerns
 * (its path), what was expected there in the terms of the schema's own type (a
 * number, not the JSON codec's `"Infinity" | "-Infinity" | "NaN"`) and what was
 * given (`a: expected a number, got "x"`), walking effect's `SchemaIssue` tree.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Formatter from "effect/Formatter"
import * as Rpc from "effect/rpc/Rpc"
import * as RpcGroup from "effect/rpc/RpcGroup"
import * as Schema from "effect/Schema"
import type * as SchemaAST from "effect/SchemaAST"
import * as SchemaIssue from "effect/SchemaIssue"

/** The most of a given value shown in a message. */
const maxShown = 60

/** A value given, as JSON-like text, shortened when long (a huge payload is not printed back whole). */
const shown = (value: unknown): string => {
  const text = Formatter.format(value)
  return text.length <= maxShown ? text : `${text.slice(0, maxShown)}… (${text.length} characters)`
}

/** A path as a user writes it: `a`, `items[0].name`, `["a b"]`. */
const pathText = (path: ReadonlyArray<PropertyKey>): string =>
  path.map((key, i) =>
    typeof key === "number"
      ? `[${key}]`
      : typeof key === "string" && /^[A-Za-z_$][\w$]*$/.test(key)
      ? i === 0 ? key : `.${key}`
      : `[${typeof key === "string" ? JSON.stringify(key) : String(key)}]`
  ).join("")

/** What a schema's type is, as a noun (`a number`, `an object`, `"packed" or "json"`), when it can say. */
const describe = (ast: SchemaAST.AST): string | undefined => {
  const expected = ast.annotations?.["expected"] ?? ast.annotations?.["identifier"]
  if (typeof expected === "string") return expected
  switch (ast._tag) {
    case "Number":
      return "a number"
    case "String":
      return "a string"
    case "Boolean":
      return "a boolean"
    case "BigInt":
      return "an integer (bigint)"
    case "Null":
      return "null"
    case "Void":
    case "Undefined":
      return "nothing (null)"
    case "Literal":
      return Formatter.format(ast.literal)
    case "Objects":
      return ast.propertySignatures.length === 0 && ast.indexSignatures.length > 0 ? "a record" : "an object"
    case "Arrays":
      return "an array"
    case "Union": {
      const members = ast.types.map(describe)
      return members.every((m) => m !== undefined) ? [...new Set(members)].join(" or ") : undefined
    }
    default:
      return undefined
  }
}

/** Effect's own text for an issue, starting lower-case to follow a path. */
const effectText = (issue: SchemaIssue.Issue): string => {
  const text = SchemaIssue.makeFormatterStandardSchemaV1()(issue).issues[0]?.message ?? "invalid"
  return text.charAt(0).toLowerCase() + text.slice(1)
}

/** `expected X` (the type of `ast`) with what was given, when the issue kept it; else effect's own text. */
const expectedText = (ast: SchemaAST.AST, issue: SchemaIssue.Issue): string => {
  const expected = describe(ast)
  if (expected === undefined) return effectText(issue)
  return SchemaIssue.hasInput(issue) ? `expected ${expected}, got ${shown(issue.input)}` : `expected ${expected}`
}

/** The type of field `key` of an object schema, to say what a missing one should have been. */
const fieldType = (ast: SchemaAST.AST | undefined, key: PropertyKey): SchemaAST.AST | undefined =>
  ast?._tag === "Objects" ? ast.propertySignatures.find((p) => p.name === key)?.type : undefined

/** Whether an issue concerns a field within its value (an alternative that matched but for a field). */
const nested = (issue: SchemaIssue.Issue): boolean => {
  switch (issue._tag) {
    case "Pointer":
      return true
    case "Composite":
    case "AnyOf":
      return issue.issues.some(nested)
    case "Encoding":
    case "Filter":
      return nested(issue.issue)
    default:
      return false
  }
}

/** Each problem of `issue` at `path` (`here`: the schema's type there, when known), into `out`. */
const collect = (
  issue: SchemaIssue.Issue,
  path: ReadonlyArray<PropertyKey>,
  here: SchemaAST.AST | undefined,
  out: Array<readonly [ReadonlyArray<PropertyKey>, string]>
): void => {
  switch (issue._tag) {
    case "Pointer": {
      const key = issue.path.length === 1 ? issue.path[0] : undefined
      return collect(issue.issue, [...path, ...issue.path], key === undefined ? undefined : fieldType(here, key), out)
    }
    case "Composite":
      for (const inner of issue.issues) {
        collect(inner, path, inner._tag === "Pointer" ? issue.ast : here, out)
      }
      return
    case "Encoding":
      // the encoded form (a JSON codec's union, a base64 string) is not what was given the wrong type: its type is
      return (issue.issue._tag === "AnyOf" || issue.issue._tag === "InvalidType") && !nested(issue.issue)
        ? void out.push([path, expectedText(issue.ast, issue.issue)])
        : collect(issue.issue, path, issue.ast, out)
    case "AnyOf":
      if (issue.issues.length > 0) {
        for (const inner of issue.issues) collect(inner, path, here, out)
        return
      }
      return void out.push([path, expectedText(issue.ast, issue)])
    case "InvalidType":
      return void out.push([path, expectedText(issue.ast, issue)])
    case "MissingKey":
      return void out.push([
        path,
        here === undefined || describe(here) === undefined ? "missing" : `missing, expected ${describe(here)}`
      ])
    case "UnexpectedKey":
      return void out.push([path, SchemaIssue.hasInput(issue) ? `unexpected, got ${shown(issue.input)}` : "unexpected"])
    default:
      return void out.push([path, effectText(issue)])
  }
}

/** An issue as one line: each problem as `path: what was expected, got what was given`, joined by `; `. */
export const issueText = (issue: SchemaIssue.Issue): string => {
  const out: Array<readonly [ReadonlyArray<PropertyKey>, string]> = []
  collect(issue, [], undefined, out)
  return out.map(([path, text]) => path.length === 0 ? text : `${pathText(path)}: ${text}`).join("; ")
}

/** A schema error as `issueText` says it. */
export const errorText = (error: Schema.SchemaError): string => issueText(error.issue)

/**
 * `group` served so that a request whose payload does not decode is refused as `issueText` says it,
 * with the procedure's name (`Add: a: expected a number`): effect's server sends the client its own
 * text (`Expected "Infinity" | "-Infinity" | "NaN"` for a number given a string, and the field on a
 * second line that a peer may not show), which is all the client learns. Serializations that decode
 * the payload's type directly (`packed`: `Schema.toCodecIso`) keep effect's text.
 */
export const readableRequests = (
  group: RpcGroup.RpcGroup<Rpc.AnyWithProps>
): RpcGroup.RpcGroup<Rpc.AnyWithProps> =>
  RpcGroup.make(
    ...[...group.requests.values()].map((given) => {
      // every procedure is an Rpc at run time; a group loaded at run time types them by their fields only
      const rpc = given as unknown as Rpc.Rpc<string, Schema.Top>
      const options = Context.get(rpc.annotations, Rpc.ParseOptions)
      const payload = rpc.payloadSchema.pipe(
        Schema.middlewareDecoding((decoded) =>
          Effect.mapError(
            decoded,
            (issue) => new SchemaIssue.InvalidValue({ message: `${rpc._tag}: ${issueText(issue)}` })
          )
        )
      )
      // every problem, unless the procedure asked otherwise (not the values given: a peer's may be large)
      return rpc.annotate(Rpc.ParseOptions, { errors: "all", ...options })
        // a payload schema as the procedure's own, but for how its failures read
        .setPayload(payload) as unknown as Rpc.AnyWithProps
    })
  ).annotateMerge(group.annotations)
