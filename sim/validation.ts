// The checks Parallel applies to POST /v1/tasks/runs (reference §3, §9, §11), written from the
// reference as an independent model of Parallel; the relay's own edge checks are separate code.
//
// Order, as a FastAPI service would do it: the body's shape (422), then the processor (403),
// then the rules that need the whole request: webhook beta, sizes, output-schema rules (422).

import { z } from "zod";
import { findProcessor, type Processor } from "../src/parallel/processors.ts";
import type { ValidationIssue } from "./errors.ts";
import type { Warning } from "./types.ts";

export const WEBHOOK_BETA = "webhook-2025-08-12";
export const FIELD_BASIS_BETA = "field-basis-2025-11-25";

export const LIMITS = {
  metadataKeyChars: 16,
  metadataValueChars: 512,
  sourcePolicyDomains: 200,
  schemaDepth: 5,
  schemaProperties: 100,
  schemaStringChars: 25_000,
  enumValues: 500,
  largeEnumValues: 250,
  largeEnumChars: 7_500,
  taskSpecChars: 15_000,
  taskSpecPlusInputChars: 25_000,
} as const;

/** Keywords §9 lists as unsupported in output schemas. All are refused (the docs show one as an error). */
export const UNSUPPORTED_KEYWORDS: ReadonlySet<string> = new Set([
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
]);

/** Output field names that look like research basis and draw a warning (§5). */
export const BASIS_LIKE_NAMES: ReadonlySet<string> = new Set([
  "citations",
  "confidence",
  "evidence",
  "reasoning",
  "source",
  "sources",
  "source_urls",
]);

function isHttpUrl(value: string): boolean {
  if (!URL.canParse(value)) return false;
  const { protocol } = new URL(value);
  return protocol === "http:" || protocol === "https:";
}

const httpUrl = z.string().refine(isHttpUrl, { message: "must be an absolute http(s) URL" });

// A plain domain ("example.com") or a bare extension (".gov"): no scheme, no path, no spaces.
const domain = z
  .string()
  .min(1)
  .max(253)
  .regex(/^\.?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$/, {
    message: "must be a domain or extension without scheme or path",
  });

const jsonObject = z.record(z.string(), z.unknown());
const jsonSchemaSpec = z.object({ json_schema: jsonObject, type: z.literal("json").optional() });
const textSchemaSpec = z.object({ description: z.string().nullish(), type: z.literal("text").optional() });
const autoSchemaSpec = z.object({ type: z.literal("auto") });

const isoDate = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, { message: "must be a date YYYY-MM-DD" })
  .refine((value) => !Number.isNaN(Date.parse(`${value}T00:00:00Z`)), { message: "is not a calendar date" });

export const runInputSchema = z.object({
  input: z.union([z.string(), jsonObject]),
  processor: z.string(),
  task_spec: z
    .object({
      output_schema: z.union([z.string(), jsonSchemaSpec, autoSchemaSpec, textSchemaSpec]),
      input_schema: z.union([z.string(), jsonSchemaSpec, textSchemaSpec]).nullish(),
    })
    .nullish(),
  metadata: z
    .record(
      z.string().max(LIMITS.metadataKeyChars),
      z.union([z.string().max(LIMITS.metadataValueChars), z.number(), z.boolean()]),
    )
    .nullish(),
  source_policy: z
    .object({
      include_domains: z.array(domain).optional(),
      exclude_domains: z.array(domain).optional(),
      after_date: isoDate.nullish(),
    })
    .refine(
      (policy) =>
        (policy.include_domains?.length ?? 0) + (policy.exclude_domains?.length ?? 0) <=
        LIMITS.sourcePolicyDomains,
      {
        message: `at most ${LIMITS.sourcePolicyDomains} domains in include_domains and exclude_domains combined`,
      },
    )
    .nullish(),
  advanced_settings: z
    .object({
      location: z
        .string()
        .regex(/^[A-Za-z]{2}$/, { message: "must be an ISO 3166-1 alpha-2 code" })
        .nullish(),
    })
    .nullish(),
  previous_interaction_id: z.string().nullish(),
  mcp_servers: z
    .array(
      z.object({
        name: z.string(),
        url: httpUrl,
        type: z.literal("url").optional(),
        headers: z.record(z.string(), z.string()).nullish(),
        allowed_tools: z.array(z.string()).nullish(),
      }),
    )
    .nullish(),
  enable_events: z.boolean().nullish(),
  memory_scope_key: z.string().nullish(),
  webhook: z
    .object({
      url: httpUrl,
      event_types: z.array(z.literal("task_run.status")).optional(),
    })
    .nullish(),
});

export type RunInput = z.infer<typeof runInputSchema>;

export type CreateCheck =
  | { ok: true; input: RunInput; processor: Processor; warnings: Warning[]; betas: ReadonlySet<string> }
  | { ok: false; status: 403 | 422; issues: ValidationIssue[]; processor?: string };

/** Parses `parallel-beta`: a comma-separated list (several header lines arrive joined by ", "). */
export function parseBetas(header: string | null | undefined): Set<string> {
  return new Set(
    (header ?? "")
      .split(",")
      .map((flag) => flag.trim())
      .filter((flag) => flag !== ""),
  );
}

export function checkCreateRequest(body: unknown, betaHeader: string | null | undefined): CreateCheck {
  const parsed = runInputSchema.safeParse(body);
  if (!parsed.success) {
    return {
      ok: false,
      status: 422,
      issues: parsed.error.issues.map((issue) => ({
        loc: ["body", ...issue.path.map((part) => (typeof part === "symbol" ? String(part) : part))],
        msg: issue.message,
        type: issue.code,
      })),
    };
  }
  const input = parsed.data;
  const processor = findProcessor(input.processor);
  if (!processor) {
    return {
      ok: false,
      status: 403,
      processor: input.processor,
      issues: [
        { loc: ["body", "processor"], msg: `unknown processor '${input.processor}'`, type: "processor" },
      ],
    };
  }

  const betas = parseBetas(betaHeader);
  const errors: ValidationIssue[] = [];
  const warnings: Warning[] = [];

  if (input.webhook && !betas.has(WEBHOOK_BETA)) {
    errors.push({
      loc: ["header", "parallel-beta"],
      msg: `webhook requires the header parallel-beta: ${WEBHOOK_BETA}`,
      type: "missing_beta",
    });
  }

  const specChars = input.task_spec ? codePoints(JSON.stringify(input.task_spec)) : 0;
  const inputChars = codePoints(typeof input.input === "string" ? input.input : JSON.stringify(input.input));
  if (specChars > LIMITS.taskSpecChars) {
    errors.push({
      loc: ["body", "task_spec"],
      msg: `task spec is ${specChars} characters; the limit is ${LIMITS.taskSpecChars}`,
      type: "too_long",
    });
  }
  if (specChars + inputChars > LIMITS.taskSpecPlusInputChars) {
    errors.push({
      loc: ["body"],
      msg: `task spec + input is ${specChars + inputChars} characters; the limit is ${LIMITS.taskSpecPlusInputChars}`,
      type: "too_long",
    });
  }

  const outputSchema = input.task_spec?.output_schema;
  if (typeof outputSchema === "object" && "json_schema" in outputSchema) {
    const scan = scanOutputSchema(outputSchema.json_schema, processor);
    errors.push(...scan.errors);
    warnings.push(...scan.warnings);
  }

  const inputSchema = input.task_spec?.input_schema;
  if (inputSchema && typeof inputSchema === "object" && "json_schema" in inputSchema) {
    warnings.push(...checkInputAgainstSchema(input.input, inputSchema.json_schema));
  }

  if (errors.length > 0) return { ok: false, status: 422, issues: errors };
  return { ok: true, input, processor, warnings, betas };
}

/**
 * Characters as Parallel (a Python service) counts them: code points, as `len()` does, not UTF-16
 * units. zod's `.max()` on strings counts code points too, so metadata keys and values agree.
 */
function codePoints(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function typesOf(node: Record<string, unknown>): string[] {
  if (typeof node.type === "string") return [node.type];
  if (Array.isArray(node.type)) return node.type.filter((t): t is string => typeof t === "string");
  return [];
}

const SCHEMA_LOC = ["body", "task_spec", "output_schema", "json_schema"];

interface ScanState {
  errors: ValidationIssue[];
  warnings: Warning[];
  properties: number;
  enumValues: number;
  depthReported: boolean;
}

function specWarning(message: string, path: (string | number)[]): Warning {
  return { type: "spec_validation_warning", message, detail: { path: path.join(".") || "(root)" } };
}

/** Errors and warnings of §9 for a JSON output schema. */
export function scanOutputSchema(
  root: Record<string, unknown>,
  processor: Processor,
): { errors: ValidationIssue[]; warnings: Warning[] } {
  const state: ScanState = { errors: [], warnings: [], properties: 0, enumValues: 0, depthReported: false };
  const error = (path: (string | number)[], msg: string, type: string): void => {
    state.errors.push({ loc: [...SCHEMA_LOC, ...path], msg, type });
  };

  if (root.type !== "object") error(["type"], "the root type must be 'object'", "invalid_schema");
  if (!isRecord(root.properties)) error(["properties"], "the root must have 'properties'", "invalid_schema");
  if ("anyOf" in root) error(["anyOf"], "the root cannot use 'anyOf'", "invalid_schema");

  walkSchema(root, [], 0, false, state, error);

  if (state.properties > LIMITS.schemaProperties) {
    error([], `${state.properties} properties; the limit is ${LIMITS.schemaProperties}`, "too_complex");
  }
  if (state.enumValues > LIMITS.enumValues) {
    error([], `${state.enumValues} enum values; the limit is ${LIMITS.enumValues}`, "too_complex");
  }
  const chars = schemaStringChars(root, false);
  if (chars > LIMITS.schemaStringChars) {
    error(
      [],
      `${chars} characters of names and values; the limit is ${LIMITS.schemaStringChars}`,
      "too_complex",
    );
  }

  const fields = isRecord(root.properties) ? Object.keys(root.properties).length : 0;
  if (fields > processor.maxFields) {
    state.warnings.push(
      specWarning(
        `the output schema has ${fields} fields; processor '${processor.name}' handles about ${processor.maxFields} well`,
        [],
      ),
    );
  }
  return { errors: state.errors, warnings: state.warnings };
}

function walkSchema(
  node: unknown,
  path: (string | number)[],
  depth: number,
  inUnion: boolean,
  state: ScanState,
  error: (path: (string | number)[], msg: string, type: string) => void,
): void {
  if (!isRecord(node)) return;
  for (const keyword of Object.keys(node)) {
    if (UNSUPPORTED_KEYWORDS.has(keyword)) {
      error([...path, keyword], `unsupported keyword '${keyword}'`, "unsupported_keyword");
    }
  }
  const types = typesOf(node);
  if (types.length === 1 && types[0] === "null" && !inUnion) {
    error(
      [...path, "type"],
      "a standalone 'null' type is only allowed inside anyOf or a type union",
      "invalid_schema",
    );
  }
  const isObject = types.includes("object") || isRecord(node.properties);
  const isArray = types.includes("array") || "items" in node;
  const level = isObject || isArray ? depth + 1 : depth;
  if (level > LIMITS.schemaDepth && !state.depthReported) {
    state.depthReported = true;
    error(path, `nesting deeper than ${LIMITS.schemaDepth} levels of objects and arrays`, "too_complex");
  }

  if (isRecord(node.properties)) {
    const names = Object.keys(node.properties);
    state.properties += names.length;
    for (const name of names) {
      if (BASIS_LIKE_NAMES.has(name.toLowerCase())) {
        state.warnings.push(
          specWarning(
            `field '${name}' looks like research basis; citations, reasoning and confidence come in output.basis`,
            [...path, "properties", name],
          ),
        );
      }
      walkSchema(node.properties[name], [...path, "properties", name], level, false, state, error);
    }
    const required = new Set(
      Array.isArray(node.required) ? node.required.filter((r): r is string => typeof r === "string") : [],
    );
    const optional = names.filter((name) => !required.has(name));
    if (optional.length > 0) {
      state.warnings.push(
        specWarning(
          `properties not in 'required': ${optional.join(", ")}; list every property and use a ["<type>","null"] type for optional ones`,
          path,
        ),
      );
    }
  }
  if (isObject && node.additionalProperties !== false) {
    state.warnings.push(specWarning("objects should set 'additionalProperties': false", path));
  }
  if (isRecord(node.additionalProperties)) {
    walkSchema(node.additionalProperties, [...path, "additionalProperties"], level, false, state, error);
  }
  if (Array.isArray(node.items)) {
    node.items.forEach((item, i) => {
      walkSchema(item, [...path, "items", i], level, false, state, error);
    });
  } else {
    walkSchema(node.items, [...path, "items"], level, false, state, error);
  }
  if (Array.isArray(node.prefixItems)) {
    node.prefixItems.forEach((item, i) => {
      walkSchema(item, [...path, "prefixItems", i], level, false, state, error);
    });
  }
  for (const combinator of ["anyOf", "oneOf", "allOf"] as const) {
    const branches = node[combinator];
    if (!Array.isArray(branches)) continue;
    branches.forEach((branch, i) => {
      walkSchema(branch, [...path, combinator, i], depth, true, state, error);
    });
  }
  for (const definitions of ["$defs", "definitions"] as const) {
    const defs = node[definitions];
    if (!isRecord(defs)) continue;
    for (const [name, def] of Object.entries(defs)) {
      walkSchema(def, [...path, definitions, name], 0, false, state, error);
    }
  }
  if (Array.isArray(node.enum)) {
    state.enumValues += node.enum.length;
    if (node.enum.length > LIMITS.largeEnumValues) {
      const chars = node.enum.reduce<number>(
        (sum, v) => sum + (typeof v === "string" ? codePoints(v) : 0),
        0,
      );
      if (chars > LIMITS.largeEnumChars) {
        error(
          [...path, "enum"],
          `an enum of more than ${LIMITS.largeEnumValues} values has ${chars} characters; the limit is ${LIMITS.largeEnumChars}`,
          "too_complex",
        );
      }
    }
  }
}

/** Property names plus every string value, anywhere in the schema. */
function schemaStringChars(node: unknown, namesAreProperties: boolean): number {
  if (typeof node === "string") return codePoints(node);
  if (Array.isArray(node)) return node.reduce<number>((sum, item) => sum + schemaStringChars(item, false), 0);
  if (!isRecord(node)) return 0;
  let sum = 0;
  for (const [key, value] of Object.entries(node)) {
    if (namesAreProperties) sum += codePoints(key);
    sum += schemaStringChars(value, key === "properties");
  }
  return sum;
}

function matchesType(value: unknown, type: string): boolean {
  switch (type) {
    case "string":
      return typeof value === "string";
    case "integer":
      return typeof value === "number" && Number.isInteger(value);
    case "number":
      return typeof value === "number";
    case "boolean":
      return typeof value === "boolean";
    case "array":
      return Array.isArray(value);
    case "object":
      return isRecord(value);
    case "null":
      return value === null;
    default:
      return true;
  }
}

/** §5: an input that fails its input_schema is a warning, not an error. Top-level check only. */
function checkInputAgainstSchema(input: unknown, schema: Record<string, unknown>): Warning[] {
  const warn = (message: string, detail: Record<string, unknown>): Warning => ({
    type: "input_validation_warning",
    message,
    detail,
  });
  if (!isRecord(input)) {
    return typesOf(schema).includes("object") || isRecord(schema.properties)
      ? [warn("input is a string but input_schema describes an object", {})]
      : [];
  }
  const warnings: Warning[] = [];
  const required = Array.isArray(schema.required) ? schema.required : [];
  for (const name of required) {
    if (typeof name === "string" && !(name in input)) {
      warnings.push(warn(`input is missing required property '${name}'`, { property: name }));
    }
  }
  if (isRecord(schema.properties)) {
    for (const [name, propertySchema] of Object.entries(schema.properties)) {
      if (!(name in input) || !isRecord(propertySchema)) continue;
      const types = typesOf(propertySchema);
      if (types.length > 0 && !types.some((type) => matchesType(input[name], type))) {
        warnings.push(
          warn(`input property '${name}' is not of type ${types.join(" | ")}`, {
            property: name,
            expected: types,
          }),
        );
      }
    }
  }
  return warnings;
}
