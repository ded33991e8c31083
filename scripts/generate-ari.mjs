// Generates the typed ARI surface of the client (src/client/generated/*.ts) from Asterisk's ARI
// api-docs (Swagger 1.1/1.2 resource listing + API declarations).
//
//   npm run generate:ari                       reads vendor/ari-api-docs (Asterisk 23.4.1's, in the repo)
//   ARI_API_DOCS=/path/to/api-docs-dir npm run generate:ari
//
// Only names and types are emitted: Asterisk's description texts never reach the output.
// `generate(dir)` is pure (files in, strings out) so the staleness test can compare in memory.
import { readdirSync, readFileSync, writeFileSync, mkdirSync } from "node:fs"
import path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
export const outputDir = path.join(repoRoot, "src", "client", "generated")

/** The api-docs directory: `$ARI_API_DOCS`, else `vendor/ari-api-docs` in the repo. */
export const apiDocsDir = () => path.resolve(repoRoot, process.env.ARI_API_DOCS ?? "vendor/ari-api-docs")

// ---------------------------------------------------------------------------------------------
// Reading

const readJson = (file) => JSON.parse(readFileSync(file, "utf8"))

/**
 * Loads the resource listing and every API declaration, in the listing's order.
 * @param {string} dir
 */
export const loadApiDocs = (dir) => {
  const listing = readJson(path.join(dir, "resources.json"))
  const resources = listing.apis.map((entry) => {
    // "/api-docs/deviceStates.{format}" -> "deviceStates"
    const name = entry.path.replace(/^\/api-docs\//, "").replace(/\.\{format\}$/, "")
    return { name, declaration: readJson(path.join(dir, "api-docs", `${name}.json`)) }
  })
  const listed = new Set(resources.map((resource) => `${resource.name}.json`))
  const unlisted = readdirSync(path.join(dir, "api-docs")).filter((file) => file.endsWith(".json") && !listed.has(file))
  if (unlisted.length > 0) throw new Error(`api-docs files missing from resources.json: ${unlisted.join(", ")}`)
  let asteriskVersion = "unknown"
  try {
    const readme = readFileSync(path.join(dir, "README.md"), "utf8")
    asteriskVersion = /release tag `([^`]+)`/.exec(readme)?.[1] ?? asteriskVersion
  } catch {
    // The README only feeds the header line.
  }
  return { apiVersion: listing.apiVersion, asteriskVersion, resources }
}

// ---------------------------------------------------------------------------------------------
// Naming and types

const identifier = /^[A-Za-z_$][A-Za-z0-9_$]*$/
const key = (name) => (identifier.test(name) ? name : JSON.stringify(name))
const pascal = (name) =>
  name.split(/[^A-Za-z0-9]+/).filter(Boolean).map((part) => part[0].toUpperCase() + part.slice(1)).join("")
const literalUnion = (values) => values.map((value) => JSON.stringify(value)).join(" | ")
const listItem = (type) => /^List\[(.+)\]$/.exec(type)?.[1]
const enumValues = (spec) => (spec.allowableValues?.valueType === "LIST" ? spec.allowableValues.values : undefined)

const numberTypes = new Set(["int", "long", "double", "float"])

/** TypeScript type of a model property or response class. */
const tsType = (type, values, modelPrefix = "") => {
  const item = listItem(type)
  if (item !== undefined) return `ReadonlyArray<${tsType(item, undefined, modelPrefix)}>`
  if (type === "string") return values ? literalUnion(values) : "string"
  if (numberTypes.has(type)) return "number"
  if (type === "boolean") return "boolean"
  if (type === "Date") return "string" // ARI timestamps travel as text: 2026-11-30T10:28:16.331+0000
  if (type === "object") return "Readonly<Record<string, unknown>>"
  if (type === "void") return "void"
  if (type === "binary") return "Uint8Array"
  return `${modelPrefix}${type}`
}

/** Effect Schema expression of a model property. */
const schemaExpr = (type, values) => {
  const item = listItem(type)
  if (item !== undefined) return `Schema.Array(${schemaExpr(item)})`
  if (type === "string") {
    return values ? `Schema.Literal(${values.map((value) => JSON.stringify(value)).join(", ")})` : "Schema.String"
  }
  if (numberTypes.has(type)) return "Schema.Number"
  if (type === "boolean") return "Schema.Boolean"
  if (type === "Date") return "Schema.String"
  if (type === "object") return "Schema.Record({ key: Schema.String, value: Schema.Unknown })"
  return `${type}Schema`
}

const modelRefs = (type) => {
  const item = listItem(type)
  if (item !== undefined) return modelRefs(item)
  return ["string", "boolean", "Date", "object", "void", "binary"].includes(type) || numberTypes.has(type) ? [] : [type]
}

/** TypeScript type of an operation parameter, as a caller passes it. */
const paramType = (param, modelPrefix) => {
  if (param.paramType === "body") {
    // "containers" bodies are `{ <name>: ... }`; `fields` of asterisk.updateObject is a list of ConfigTuple.
    if (param.dataType === "containers") {
      return param.name === "fields" ? `ReadonlyArray<${modelPrefix}ConfigTuple>` : "Readonly<Record<string, string>>"
    }
    return "Readonly<Record<string, unknown>>"
  }
  const values = enumValues(param)
  const single = numberTypes.has(param.dataType)
    ? "number"
    : param.dataType === "boolean"
    ? "boolean"
    : values
    ? literalUnion(values)
    : "string"
  if (!param.allowMultiple) return single
  // ARI takes several values comma-separated: give an array, or the comma string yourself.
  return values ? `${single} | ReadonlyArray<${single}>` : `string | ReadonlyArray<${single}>`
}

// ---------------------------------------------------------------------------------------------
// Model

/** Every model of every declaration, with its file, parent and flattened properties. */
const collectModels = (docs) => {
  const models = new Map()
  for (const resource of docs.resources) {
    for (const [id, model] of Object.entries(resource.declaration.models ?? {})) {
      if (models.has(id)) throw new Error(`model ${id} is declared twice`)
      models.set(id, { id, resource: resource.name, model, parent: undefined })
    }
  }
  for (const entry of models.values()) {
    for (const child of entry.model.subTypes ?? []) {
      const sub = models.get(child)
      if (sub === undefined) throw new Error(`${entry.id}.subTypes names unknown model ${child}`)
      sub.parent = entry.id
    }
  }
  for (const entry of models.values()) {
    for (const property of Object.values(entry.model.properties)) {
      for (const ref of modelRefs(property.type)) {
        if (!models.has(ref)) throw new Error(`${entry.id} refers to unknown model ${ref}`)
      }
    }
  }
  return models
}

const ancestors = (models, id) => {
  const chain = []
  for (let parent = models.get(id).parent; parent !== undefined; parent = models.get(parent).parent) {
    chain.unshift(parent)
  }
  return chain
}

/** Own properties first declared by the ancestors, then the model's own: what a frame carries. */
const flatProperties = (models, id) => {
  const properties = new Map()
  for (const name of [...ancestors(models, id), id]) {
    for (const [prop, spec] of Object.entries(models.get(name).model.properties)) properties.set(prop, spec)
  }
  return properties
}

const isAbstract = (entry) => (entry.model.subTypes ?? []).length > 0

/** The message hierarchy's discriminator (`type` on Message) applies to every descendant. */
const discriminatorOf = (models, id) => {
  for (const name of [...ancestors(models, id), id]) {
    const discriminator = models.get(name).model.discriminator
    if (discriminator !== undefined) return discriminator
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------
// Output: models.ts

const header = (docs) =>
  `// Generated by scripts/generate-ari.mjs from Asterisk ${docs.asteriskVersion} ARI ${docs.apiVersion} api-docs. ` +
  "Do not edit.\n// Regenerate with `npm run generate:ari`; " +
  "test/client/generated.test.ts fails when this file is stale.\n"

const renderModels = (docs, models) => {
  const lines = [header(docs), `import { Schema } from "effect"`, ""]

  lines.push("// Interfaces: one per model, in api-docs order. Event models extend their parents.", "")
  let currentResource
  for (const entry of models.values()) {
    if (entry.resource !== currentResource) {
      currentResource = entry.resource
      lines.push(`// ${entry.resource}.json`, "")
    }
    const discriminator = discriminatorOf(models, entry.id)
    const extendsClause = entry.parent ? ` extends ${entry.parent}` : ""
    lines.push(`export interface ${entry.id}${extendsClause} {`)
    if (discriminator !== undefined && !isAbstract(entry)) {
      lines.push(`  readonly ${key(discriminator)}: ${JSON.stringify(entry.id)}`)
    }
    for (const [prop, spec] of Object.entries(entry.model.properties)) {
      if (prop === discriminator && entry.model.discriminator === undefined) continue
      const optional = spec.required === true ? "" : "?"
      lines.push(`  readonly ${key(prop)}${optional}: ${tsType(spec.type, enumValues(spec))}`)
    }
    lines.push("}", "")
  }

  const events = [...models.values()].filter((entry) =>
    discriminatorOf(models, entry.id) !== undefined && !isAbstract(entry)
  )
  lines.push(
    "/** Every concrete message of the event websocket, discriminated by `type`. */",
    `export type AriEvent =\n${events.map((entry) => `  | ${entry.id}`).join("\n")}`,
    "",
    "export type AriEventType = AriEvent[\"type\"]",
    "",
    `export const ariEventTypes: ReadonlyArray<AriEventType> = [\n${
      events.map((entry) => `  ${JSON.stringify(entry.id)}`).join(",\n")
    }\n]`,
    "",
    `/** Every model name of the api-docs, abstract ones (${
      [...models.values()].filter(isAbstract).map((entry) => entry.id).join(", ")
    }) included. */`,
    `export const ariModelNames: ReadonlyArray<string> = [\n${
      [...models.keys()].map((id) => `  ${JSON.stringify(id)}`).join(",\n")
    }\n]`,
    ""
  )

  // Schemas in dependency order, so each refers only to schemas declared above it.
  const concrete = [...models.values()].filter((entry) => !isAbstract(entry))
  const ordered = []
  const state = new Map()
  const visit = (id) => {
    if (state.get(id) === "done") return
    if (state.get(id) === "visiting") throw new Error(`models refer to each other in a cycle through ${id}`)
    state.set(id, "visiting")
    for (const spec of flatProperties(models, id).values()) modelRefs(spec.type).forEach(visit)
    state.set(id, "done")
    ordered.push(id)
  }
  concrete.forEach((entry) => visit(entry.id))

  lines.push(
    "// Schemas: lenient about fields they do not know (decode with onExcessProperty \"preserve\" to keep them).",
    ""
  )
  for (const id of ordered) {
    const discriminator = discriminatorOf(models, id)
    const fields = []
    if (discriminator !== undefined) fields.push(`  ${key(discriminator)}: Schema.Literal(${JSON.stringify(id)})`)
    for (const [prop, spec] of flatProperties(models, id)) {
      if (prop === discriminator) continue
      const expr = schemaExpr(spec.type, enumValues(spec))
      fields.push(`  ${key(prop)}: ${spec.required === true ? expr : `Schema.optionalWith(${expr}, { exact: true })`}`)
    }
    const body = fields.length === 0 ? "{}" : `{\n${fields.join(",\n")}\n}`
    lines.push(`export const ${id}Schema: Schema.Schema<${id}> = Schema.Struct(${body})`, "")
  }

  lines.push(
    "/** The schema of each concrete event, by its `type`. */",
    "export const ariEventSchemas: {",
    "  readonly [T in AriEventType]: Schema.Schema<Extract<AriEvent, { readonly type: T }>>",
    "} = {",
    events.map((entry) => `  ${key(entry.id)}: ${entry.id}Schema`).join(",\n"),
    "}",
    "",
    `export const AriEventSchema: Schema.Schema<AriEvent> = Schema.Union(\n${
      events.map((entry) => `  ${entry.id}Schema`).join(",\n")
    }\n)`,
    ""
  )
  return lines.join("\n")
}


// ---------------------------------------------------------------------------------------------
// Output: operations.ts

const collectOperations = (docs) => {
  const operations = []
  for (const resource of docs.resources) {
    for (const api of resource.declaration.apis ?? []) {
      for (const operation of api.operations) {
        const params = operation.parameters ?? []
        const byKind = (kind) =>
          params.filter((param) => param.paramType === kind).map((param) => ({
            name: param.name,
            dataType: param.dataType,
            // Path parameters are part of the URL: always required, whatever the file says.
            required: kind === "path" ? true : param.required === true,
            allowMultiple: param.allowMultiple === true,
            source: param
          }))
        const unknownKinds = params.filter((param) => !["path", "query", "body"].includes(param.paramType))
        if (unknownKinds.length > 0) throw new Error(`unexpected paramType in ${resource.name}.${operation.nickname}`)
        operations.push({
          resource: resource.name,
          nickname: operation.nickname,
          method: operation.httpMethod.toUpperCase(),
          path: api.path,
          pathParams: byKind("path"),
          queryParams: byKind("query"),
          bodyParams: byKind("body"),
          responseClass: operation.responseClass,
          // Some files write codes as strings ("404"): normalise to numbers, once each, ascending.
          errorStatuses: [...new Set((operation.errorResponses ?? []).map((error) => Number(error.code)))]
            .sort((a, b) => a - b),
          upgrade: operation.upgrade
        })
      }
    }
  }
  const seen = new Set()
  for (const operation of operations) {
    const id = `${operation.resource}.${operation.nickname}`
    if (seen.has(id)) throw new Error(`operation ${id} is declared twice`)
    seen.add(id)
  }
  return operations
}

const paramsTypeName = (operation) => `${pascal(operation.resource)}${pascal(operation.nickname)}Params`
const allParams = (operation) => [...operation.pathParams, ...operation.queryParams, ...operation.bodyParams]
const hasRequiredParams = (operation) => allParams(operation).some((param) => param.required)

const renderParamDescriptor = (param) =>
  `{ name: ${JSON.stringify(param.name)}, dataType: ${JSON.stringify(param.dataType)}, required: ${param.required}, ` +
  `allowMultiple: ${param.allowMultiple} }`

const renderParamList = (params) =>
  params.length === 0
    ? "[]"
    : `[\n${params.map((param) => `        ${renderParamDescriptor(param)}`).join(",\n")}\n      ]`

const renderOperations = (docs, operations) => {
  const resources = docs.resources.map((resource) => resource.name)
  const lines = [
    header(docs),
    `import type * as Models from "./models.js"`,
    "",
    `export type AriResourceName =\n${resources.map((name) => `  | ${JSON.stringify(name)}`).join("\n")}`,
    "",
    "/** A parameter: its Swagger dataType (string, int, long, boolean, containers, object), how it may be given. */",
    "export interface ParamDescriptor {",
    "  readonly name: string",
    "  readonly dataType: string",
    "  readonly required: boolean",
    "  /** Several values: an array, or one comma-separated string, joined by commas on the wire. */",
    "  readonly allowMultiple: boolean",
    "}",
    "",
    "export interface OperationDescriptor {",
    "  readonly resource: AriResourceName",
    "  readonly nickname: string",
    "  readonly method: \"GET\" | \"POST\" | \"PUT\" | \"DELETE\"",
    "  /** Relative to the ARI base URL (`stasis_url` on the bus), with `{name}` placeholders. */",
    "  readonly path: string",
    "  readonly pathParams: ReadonlyArray<ParamDescriptor>",
    "  readonly queryParams: ReadonlyArray<ParamDescriptor>",
    "  /** JSON body: a `containers` parameter travels as `{ <name>: value }`, an `object` parameter is the body. */",
    "  readonly bodyParams: ReadonlyArray<ParamDescriptor>",
    "  /** Swagger responseClass: a model name, List[Model], void or binary. */",
    "  readonly responseClass: string",
    "  readonly errorStatuses: ReadonlyArray<number>",
    "  /** Set on the event websocket only: not a request/response operation. */",
    "  readonly upgrade?: \"websocket\"",
    "}",
    "",
    "// Parameter types: one per operation.",
    ""
  ]

  for (const operation of operations) {
    const params = allParams(operation)
    if (params.length === 0) {
      lines.push(`export type ${paramsTypeName(operation)} = Readonly<Record<string, never>>`, "")
      continue
    }
    lines.push(`export interface ${paramsTypeName(operation)} {`)
    for (const param of params) {
      const optional = param.required ? "" : "?"
      lines.push(`  readonly ${key(param.source.name)}${optional}: ${paramType(param.source, "Models.")}`)
    }
    lines.push("}", "")
  }

  lines.push(
    "/** Parameters and result type of every operation, by resource and nickname. */",
    "export interface AriOperationTypes {"
  )
  for (const resource of resources) {
    lines.push(`  readonly ${key(resource)}: {`)
    for (const operation of operations.filter((op) => op.resource === resource)) {
      lines.push(
        `    readonly ${key(operation.nickname)}: { readonly params: ${paramsTypeName(operation)}; readonly result: ${
          tsType(operation.responseClass, undefined, "Models.")
        } }`
      )
    }
    lines.push("  }")
  }
  lines.push("}", "")

  lines.push(
    "export const operations = {"
  )
  resources.forEach((resource, index) => {
    lines.push(`  ${key(resource)}: {`)
    const ofResource = operations.filter((op) => op.resource === resource)
    ofResource.forEach((operation, opIndex) => {
      lines.push(
        `    ${key(operation.nickname)}: {`,
        `      resource: ${JSON.stringify(operation.resource)},`,
        `      nickname: ${JSON.stringify(operation.nickname)},`,
        `      method: ${JSON.stringify(operation.method)},`,
        `      path: ${JSON.stringify(operation.path)},`,
        `      pathParams: ${renderParamList(operation.pathParams)},`,
        `      queryParams: ${renderParamList(operation.queryParams)},`,
        `      bodyParams: ${renderParamList(operation.bodyParams)},`,
        `      responseClass: ${JSON.stringify(operation.responseClass)},`,
        `      errorStatuses: [${operation.errorStatuses.join(", ")}]${operation.upgrade ? "," : ""}`
      )
      if (operation.upgrade) lines.push(`      upgrade: ${JSON.stringify(operation.upgrade)}`)
      lines.push(`    }${opIndex === ofResource.length - 1 ? "" : ","}`)
    })
    lines.push(`  }${index === resources.length - 1 ? "" : ","}`)
  })
  lines.push(
    "} as const satisfies { readonly [R in AriResourceName]: { readonly [nickname: string]: OperationDescriptor } }",
    "",
    "export const allOperations: ReadonlyArray<OperationDescriptor> = Object.values(operations).flatMap(",
    "  (byNickname): ReadonlyArray<OperationDescriptor> => Object.values(byNickname)",
    ")",
    ""
  )
  return lines.join("\n")
}


// ---------------------------------------------------------------------------------------------
// Output: api.ts

const renderApi = (docs, operations) => {
  const resources = docs.resources.map((resource) => resource.name)
  const callable = operations.filter((operation) => operation.upgrade === undefined)
  const lines = [
    header(docs),
    `import type { Effect } from "effect"`,
    `import type * as Models from "./models.js"`,
    `import type * as Ops from "./operations.js"`,
    "",
    "// One method per operation, named by its Swagger nickname (the event websocket is not one of them).",
    "// Methods whose parameters are all optional may be called without arguments.",
    ""
  ]
  const signature = (operation, wrap) => {
    const optional = hasRequiredParams(operation) ? "" : "?"
    const result = tsType(operation.responseClass, undefined, "Models.")
    return `  ${key(operation.nickname)}(params${optional}: Ops.${paramsTypeName(operation)}): ${wrap(result)}`
  }
  for (const [suffix, generic, wrap] of [
    ["Effect", "<E>", (result) => `Effect.Effect<${result}, E>`],
    ["Promise", "", (result) => `Promise<${result}>`]
  ]) {
    for (const resource of resources) {
      lines.push(`export interface ${pascal(resource)}Api${suffix}${generic} {`)
      for (const operation of callable.filter((op) => op.resource === resource)) lines.push(signature(operation, wrap))
      lines.push("}", "")
    }
    lines.push(`export interface AriApi${suffix}${generic} {`)
    for (const resource of resources) {
      lines.push(`  readonly ${key(resource)}: ${pascal(resource)}Api${suffix}${generic}`)
    }
    lines.push("}", "")
  }
  return lines.join("\n")
}


const renderIndex = (docs) =>
  [
    header(docs),
    `export * from "./api.js"`,
    `export * from "./models.js"`,
    `export * from "./operations.js"`,
    ""
  ].join("\n")

// ---------------------------------------------------------------------------------------------
// Entry points

/**
 * Generates every file from the api-docs in `dir`: file name (in src/client/generated) → content.
 * @param {string} dir
 * @returns {Record<string, string>}
 */
export const generate = (dir) => {
  const docs = loadApiDocs(dir)
  const models = collectModels(docs)
  const operations = collectOperations(docs)
  return {
    "api.ts": renderApi(docs, operations),
    "index.ts": renderIndex(docs),
    "models.ts": renderModels(docs, models),
    "operations.ts": renderOperations(docs, operations)
  }
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href
if (isMain) {
  const dir = apiDocsDir()
  const files = generate(dir)
  mkdirSync(outputDir, { recursive: true })
  for (const [name, content] of Object.entries(files)) writeFileSync(path.join(outputDir, name), content)
  const written = Object.keys(files).join(", ")
  console.log(`generate:ari: wrote ${written} to ${path.relative(repoRoot, outputDir)} from ${dir}`)
}
