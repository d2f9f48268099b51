// Parallel's documented limits on a run, checked at the edge before any money is spent
// (reference §9 and §11). Each check returns every problem it finds, located by JSON path, and takes
// any JSON value: it also runs on a body that failed its zod schema, so one answer lists everything.
import type { ErrorDetail } from "../errors";
import { checkAgainstSchema, checkSchemaDocument } from "./json-schema";
import { findProcessor, PROCESSOR_NAMES } from "./processors";

export const LIMITS = {
  taskSpecChars: 15_000,
  taskSpecPlusInputChars: 25_000,
  schemaDepth: 5,
  schemaProperties: 100,
  enumValues: 500,
  largeEnumThreshold: 250,
  largeEnumChars: 7_500,
  sourcePolicyDomains: 200,
  metadataKeyChars: 16,
  metadataValueChars: 512,
} as const;

/** Keywords Parallel does not support in output schemas. */
const UNSUPPORTED_OUTPUT_KEYWORDS = [
  "contains",
  "format",
  "maxContains",
  "maxItems",
  "maxLength",
  "maxProperties",
  "maximum",
  "minContains",
  "minItems",
  "minLength",
  "minimum",
  "minProperties",
  "multipleOf",
  "pattern",
  "patternProperties",
  "propertyNames",
  "uniqueItems",
  "unevaluatedItems",
  "unevaluatedProperties",
];

/** Input schemas additionally may not branch or be conditional. */
const UNSUPPORTED_INPUT_KEYWORDS = [
  ...UNSUPPORTED_OUTPUT_KEYWORDS,
  "anyOf",
  "oneOf",
  "allOf",
  "not",
  "if",
  "then",
  "else",
  "dependentSchemas",
  "dependentRequired",
];

/** The metadata key taskrelay adds to every run so a webhook can be matched even without the create response. */
export const RUN_ID_METADATA_KEY = "taskrelay_run_id";

/**
 * Lengths as Parallel counts them: Parallel is a Python service, whose `len()` counts code points,
 * so "16 characters" allows 16 emoji (32 UTF-16 units in JavaScript's `length`).
 */
export function charCount(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

export function checkProcessor(name: unknown, path = "processor"): ErrorDetail[] {
  if (typeof name !== "string" || findProcessor(name)) return [];
  return [{ path, message: `unknown processor "${name}"; choose one of: ${PROCESSOR_NAMES.join(", ")}` }];
}

type JsonObject = Record<string, unknown>;
const isObject = (value: unknown): value is JsonObject =>
  typeof value === "object" && value !== null && !Array.isArray(value);

function inputLength(input: unknown): number {
  return charCount(typeof input === "string" ? input : JSON.stringify(input ?? ""));
}

/** Sizes of the spec and input, and the JSON schemas inside the spec. */
export function checkTaskSpec(taskSpec: unknown, input: unknown, path = "task_spec"): ErrorDetail[] {
  const problems: ErrorDetail[] = [];
  const specChars = taskSpec == null ? 0 : charCount(JSON.stringify(taskSpec));
  if (specChars > LIMITS.taskSpecChars) {
    problems.push({
      path,
      message: `task spec is ${specChars} characters; Parallel allows ${LIMITS.taskSpecChars}`,
    });
  }
  problems.push(...inputLengthProblems(specChars, input, "input"));
  if (!isObject(taskSpec)) return problems;
  const output = jsonSchemaOf(taskSpec.output_schema);
  if (output !== undefined) {
    problems.push(...checkJsonSchema(output, `${path}.output_schema.json_schema`, "output"));
  }
  const inputSchema = jsonSchemaOf(taskSpec.input_schema);
  if (inputSchema !== undefined) {
    const inputSchemaPath = `${path}.input_schema.json_schema`;
    const schemaProblems = checkJsonSchema(inputSchema, inputSchemaPath, "input");
    problems.push(...schemaProblems);
    if (schemaProblems.length === 0) problems.push(...inputSchemaProblems(inputSchema, input, "input"));
  }
  return problems;
}

/**
 * An input's own problems under a task spec whose checks (checkTaskSpec) passed: a batch checks its
 * template's spec once and each of its inputs with this.
 */
export function checkInputAgainstSpec(taskSpec: unknown, input: unknown, path = "input"): ErrorDetail[] {
  const specChars = specCharsOf(taskSpec);
  const inputSchema = isObject(taskSpec) ? jsonSchemaOf(taskSpec.input_schema) : undefined;
  return [...inputLengthProblems(specChars, input, path), ...inputSchemaProblems(inputSchema, input, path)];
}

// A batch's inputs share one spec object: its length is counted once, not once per input.
const specChars = new WeakMap<object, number>();
function specCharsOf(taskSpec: unknown): number {
  if (taskSpec == null) return 0;
  if (typeof taskSpec !== "object") return charCount(JSON.stringify(taskSpec));
  let chars = specChars.get(taskSpec);
  if (chars === undefined) {
    chars = charCount(JSON.stringify(taskSpec));
    specChars.set(taskSpec, chars);
  }
  return chars;
}

function inputLengthProblems(specChars: number, input: unknown, path: string): ErrorDetail[] {
  const total = specChars + inputLength(input);
  if (total <= LIMITS.taskSpecPlusInputChars) return [];
  return [
    {
      path,
      message: `task spec and input together are ${total} characters; Parallel allows ${LIMITS.taskSpecPlusInputChars}`,
    },
  ];
}

/** A JSON input is held to its schema before Parallel is paid to read it (Parallel only warns). */
function inputSchemaProblems(inputSchema: unknown, input: unknown, path: string): ErrorDetail[] {
  return isObject(inputSchema) && isObject(input) ? checkAgainstSchema(input, inputSchema, path) : [];
}

/** The json_schema of a JSON schema definition (`type` "json", or no type and a json_schema). */
function jsonSchemaOf(definition: unknown): unknown {
  if (!isObject(definition) || !("json_schema" in definition)) return undefined;
  return definition.type === "json" || definition.type === undefined ? definition.json_schema : undefined;
}

/** Sub-schemas a JSON schema node can hold, with the path segment that leads to each. */
function childSchemas(node: JsonObject): Array<{ key: string; schema: unknown; nests: boolean }> {
  const children: Array<{ key: string; schema: unknown; nests: boolean }> = [];
  if (isObject(node.properties)) {
    for (const [name, schema] of Object.entries(node.properties)) {
      children.push({ key: `properties.${name}`, schema, nests: true });
    }
  }
  if (isObject(node.items)) children.push({ key: "items", schema: node.items, nests: true });
  if (Array.isArray(node.prefixItems)) {
    for (const [i, schema] of node.prefixItems.entries())
      children.push({ key: `prefixItems.${i}`, schema, nests: true });
  }
  if (isObject(node.additionalProperties)) {
    children.push({ key: "additionalProperties", schema: node.additionalProperties, nests: true });
  }
  for (const branch of ["anyOf", "oneOf", "allOf"] as const) {
    const list = node[branch];
    if (!Array.isArray(list)) continue;
    for (const [i, schema] of list.entries()) children.push({ key: `${branch}.${i}`, schema, nests: false });
  }
  for (const defs of ["$defs", "definitions"] as const) {
    const table = node[defs];
    if (isObject(table)) {
      for (const [name, schema] of Object.entries(table))
        children.push({ key: `${defs}.${name}`, schema, nests: false });
    }
  }
  return children;
}

function checkJsonSchema(schema: unknown, path: string, role: "input" | "output"): ErrorDetail[] {
  const problems: ErrorDetail[] = [];
  if (!isObject(schema)) return [{ path, message: "json_schema must be a JSON object" }];
  problems.push(...checkSchemaDocument(schema, path));
  if (schema.type !== "object")
    problems.push({ path: `${path}.type`, message: 'the root of the schema must be "type": "object"' });
  if (!isObject(schema.properties))
    problems.push({ path: `${path}.properties`, message: "the root of the schema must have properties" });
  if (role === "output" && "anyOf" in schema)
    problems.push({ path: `${path}.anyOf`, message: "the root of an output schema cannot use anyOf" });

  const unsupported = new Set(role === "output" ? UNSUPPORTED_OUTPUT_KEYWORDS : UNSUPPORTED_INPUT_KEYWORDS);
  let properties = 0;
  let enumValues = 0;
  let maxDepth = 0;

  const visit = (node: unknown, nodePath: string, depth: number, insideUnion: boolean) => {
    if (!isObject(node)) return;
    const container =
      node.type === "object" || node.type === "array" || "properties" in node || "items" in node;
    if (container) maxDepth = Math.max(maxDepth, depth);
    for (const keyword of Object.keys(node)) {
      if (unsupported.has(keyword)) {
        problems.push({
          path: `${nodePath}.${keyword}`,
          message: `Parallel does not support "${keyword}" in ${role} schemas`,
        });
      }
    }
    if (node.type === "null" && !insideUnion) {
      problems.push({
        path: `${nodePath}.type`,
        message:
          'a standalone "null" type is only allowed inside anyOf; use ["string", "null"] for optional fields',
      });
    }
    if (isObject(node.properties)) properties += Object.keys(node.properties).length;
    if (Array.isArray(node.enum)) {
      enumValues += node.enum.length;
      const chars = node.enum.reduce<number>((sum, v) => sum + (typeof v === "string" ? charCount(v) : 0), 0);
      if (node.enum.length > LIMITS.largeEnumThreshold && chars > LIMITS.largeEnumChars) {
        problems.push({
          path: `${nodePath}.enum`,
          message: `an enum with more than ${LIMITS.largeEnumThreshold} values may have at most ${LIMITS.largeEnumChars} characters in all; this one has ${chars}`,
        });
      }
    }
    for (const child of childSchemas(node)) {
      const union = child.key.startsWith("anyOf") || child.key.startsWith("oneOf");
      visit(child.schema, `${nodePath}.${child.key}`, child.nests ? depth + 1 : depth, union);
    }
  };
  visit(schema, path, 1, false);

  // Depth counts the nesting of objects and arrays: a flat object is 1, an object inside it is 2.
  if (maxDepth > LIMITS.schemaDepth) {
    problems.push({
      path,
      message: `the schema nests ${maxDepth} levels deep; Parallel allows ${LIMITS.schemaDepth}`,
    });
  }
  if (properties > LIMITS.schemaProperties) {
    problems.push({
      path,
      message: `the schema has ${properties} properties in all; Parallel allows ${LIMITS.schemaProperties}`,
    });
  }
  if (enumValues > LIMITS.enumValues) {
    problems.push({
      path,
      message: `the schema has ${enumValues} enum values in all; Parallel allows ${LIMITS.enumValues}`,
    });
  }
  return problems;
}

// A plain domain (example.com, sub.example.co.uk) or a bare extension (.gov, .co.uk): no scheme, no path.
const DOMAIN = /^(\.[a-z0-9-]+)+$|^([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z0-9-]+$/i;

export function checkSourcePolicy(policy: unknown, path = "source_policy"): ErrorDetail[] {
  if (!isObject(policy)) return [];
  const problems: ErrorDetail[] = [];
  let count = 0;
  for (const list of ["include_domains", "exclude_domains"] as const) {
    const domains = policy[list];
    if (!Array.isArray(domains)) continue;
    count += domains.length;
    domains.forEach((domain, i) => {
      if (typeof domain === "string" && !DOMAIN.test(domain)) {
        problems.push({
          path: `${path}.${list}.${i}`,
          message: `"${domain}" is not a plain domain or extension (no scheme, path or port; e.g. "example.com" or ".gov")`,
        });
      }
    });
  }
  if (count > LIMITS.sourcePolicyDomains) {
    problems.push({
      path,
      message: `${count} domains in all; Parallel allows ${LIMITS.sourcePolicyDomains}`,
    });
  }
  return problems;
}

/** A warning taskrelay attaches to a run: Parallel's Warning shape, marked as taskrelay's own. */
export interface RelayWarning {
  type: "warning";
  message: string;
  detail: { path: string; source: "taskrelay" };
}

/**
 * What a run may ask that Parallel may not honour: passed on, with a warning on the run rather than
 * a refusal. `source_policy.after_date` is in the SDK's types for Task runs, but Parallel's docs list
 * it as a Search API capability.
 */
export function runWarnings(request: { source_policy?: unknown }): RelayWarning[] {
  const warnings: RelayWarning[] = [];
  if (isObject(request.source_policy) && request.source_policy.after_date != null) {
    warnings.push({
      type: "warning",
      message:
        "source_policy.after_date was passed on to Parallel, whose documentation lists it for the Search API only; Task runs may ignore it",
      detail: { path: "source_policy.after_date", source: "taskrelay" },
    });
  }
  return warnings;
}

export function checkMetadata(metadata: unknown, path = "metadata"): ErrorDetail[] {
  if (!isObject(metadata)) return [];
  const problems: ErrorDetail[] = [];
  for (const [key, value] of Object.entries(metadata)) {
    if (key === RUN_ID_METADATA_KEY) {
      problems.push({
        path: `${path}.${key}`,
        message: `"${RUN_ID_METADATA_KEY}" is reserved: taskrelay sets it`,
      });
    }
    if (charCount(key) > LIMITS.metadataKeyChars) {
      problems.push({
        path: `${path}.${key}`,
        message: `metadata keys may have at most ${LIMITS.metadataKeyChars} characters`,
      });
    }
    if (typeof value === "string" && charCount(value) > LIMITS.metadataValueChars) {
      problems.push({
        path: `${path}.${key}`,
        message: `metadata values may have at most ${LIMITS.metadataValueChars} characters`,
      });
    }
  }
  return problems;
}
