// Parallel's documented limits on a run, checked at the edge before any money is spent
// (reference §9 and §11). Each check returns every problem it finds, located by JSON path.
import type { ErrorDetail } from "../errors";
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

export function checkProcessor(name: string, path = "processor"): ErrorDetail[] {
  if (findProcessor(name)) return [];
  return [{ path, message: `unknown processor "${name}"; choose one of: ${PROCESSOR_NAMES.join(", ")}` }];
}

type JsonObject = Record<string, unknown>;
const isObject = (value: unknown): value is JsonObject =>
  typeof value === "object" && value !== null && !Array.isArray(value);

function inputLength(input: unknown): number {
  return typeof input === "string" ? input.length : JSON.stringify(input ?? "").length;
}

/** Sizes of the spec and input, and the JSON schemas inside the spec. */
export function checkTaskSpec(taskSpec: unknown, input: unknown, path = "task_spec"): ErrorDetail[] {
  const problems: ErrorDetail[] = [];
  const specChars = taskSpec == null ? 0 : JSON.stringify(taskSpec).length;
  if (specChars > LIMITS.taskSpecChars) {
    problems.push({
      path,
      message: `task spec is ${specChars} characters; Parallel allows ${LIMITS.taskSpecChars}`,
    });
  }
  const total = specChars + inputLength(input);
  if (total > LIMITS.taskSpecPlusInputChars) {
    problems.push({
      path: "input",
      message: `task spec and input together are ${total} characters; Parallel allows ${LIMITS.taskSpecPlusInputChars}`,
    });
  }
  if (!isObject(taskSpec)) return problems;
  const output = taskSpec.output_schema;
  if (isObject(output) && output.type === "json") {
    problems.push(...checkJsonSchema(output.json_schema, `${path}.output_schema.json_schema`, "output"));
  }
  const inputSchema = taskSpec.input_schema;
  if (
    isObject(inputSchema) &&
    (inputSchema.type === "json" || inputSchema.type === undefined) &&
    "json_schema" in inputSchema
  ) {
    problems.push(...checkJsonSchema(inputSchema.json_schema, `${path}.input_schema.json_schema`, "input"));
  }
  return problems;
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
      const chars = node.enum.reduce<number>((sum, v) => sum + (typeof v === "string" ? v.length : 0), 0);
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
  if (policy.after_date != null) {
    problems.push({
      path: `${path}.after_date`,
      message: "after_date is a Search API field; Parallel's Task API does not support it in source_policy",
    });
  }
  return problems;
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
    if (key.length > LIMITS.metadataKeyChars) {
      problems.push({
        path: `${path}.${key}`,
        message: `metadata keys may have at most ${LIMITS.metadataKeyChars} characters`,
      });
    }
    if (typeof value === "string" && value.length > LIMITS.metadataValueChars) {
      problems.push({
        path: `${path}.${key}`,
        message: `metadata values may have at most ${LIMITS.metadataValueChars} characters`,
      });
    }
  }
  return problems;
}
