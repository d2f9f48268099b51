// JSON Schema itself, with @cfworker/json-schema (no eval, so it runs on Workers): a schema in a task
// spec is checked against the JSON Schema meta-schema, and a JSON input against its input schema.
//
// The meta-schema is draft 2019-09's (the JSON files ajv ships; only the data is bundled, not ajv).
// Draft 2020-12's own meta-schema recurses through $dynamicRef, which @cfworker/json-schema does not
// follow into nested schemas (it passed `{"properties": {"a": {"type": "strin"}}}`); 2019-09's
// $recursiveRef it follows. The keywords both drafts share are checked the same way; the 2020-12
// additions (prefixItems, $dynamicRef) are allowed and not checked.
import { type OutputUnit, type Schema, Validator } from "@cfworker/json-schema";
import metaApplicator from "ajv/dist/refs/json-schema-2019-09/meta/applicator.json";
import metaContent from "ajv/dist/refs/json-schema-2019-09/meta/content.json";
import metaCore from "ajv/dist/refs/json-schema-2019-09/meta/core.json";
import metaFormat from "ajv/dist/refs/json-schema-2019-09/meta/format.json";
import metaData from "ajv/dist/refs/json-schema-2019-09/meta/meta-data.json";
import metaValidation from "ajv/dist/refs/json-schema-2019-09/meta/validation.json";
import metaSchema from "ajv/dist/refs/json-schema-2019-09/schema.json";
import type { ErrorDetail } from "../errors";
import { kindOf } from "../schemas/issues";

let metaValidator: Validator | undefined;

/** Built once per isolate: the validator keeps what it resolved inside the meta-schema objects. */
function metaSchemaValidator(): Validator {
  if (!metaValidator) {
    metaValidator = new Validator(metaSchema as Schema, "2019-09", false);
    for (const vocabulary of [metaCore, metaApplicator, metaValidation, metaData, metaFormat, metaContent]) {
      metaValidator.addSchema(vocabulary as Schema);
    }
  }
  return metaValidator;
}

/** Every way `schema` is not a JSON Schema (`"type": "strin"`, `"required": "name"`), by its path. */
export function checkSchemaDocument(schema: unknown, path: string): ErrorDetail[] {
  const result = metaSchemaValidator().validate(schema);
  return result.valid ? [] : toDetails(result.errors, schema, path, "schema");
}

/**
 * Every way `input` does not match `schema`, by its path under `path` (e.g. `input.year`). A schema
 * that is not valid JSON Schema, or refers to one taskrelay does not have, is reported by
 * checkSchemaDocument; here it yields no problems.
 */
export function checkAgainstSchema(
  input: unknown,
  schema: Record<string, unknown>,
  path: string,
): ErrorDetail[] {
  try {
    const result = inputValidator(schema).validate(input);
    return result.valid ? [] : toDetails(result.errors, input, path, "input");
  } catch (error) {
    return [{ path, message: `the input schema cannot be applied: ${String(error).split("\n")[0]}` }];
  }
}

// A batch's inputs share one schema object: its validator is built once, not once per input.
const inputValidators = new WeakMap<object, Validator>();
function inputValidator(schema: Record<string, unknown>): Validator {
  let validator = inputValidators.get(schema);
  if (!validator) {
    // A copy: the validator annotates the schema objects it is given.
    validator = new Validator(structuredClone(schema) as Schema, "2020-12", false);
    inputValidators.set(schema, validator);
  }
  return validator;
}

/** Keywords whose errors only say that something inside failed; the inner error says what. */
const SUMMARY_KEYWORDS = new Set([
  "$ref",
  "$recursiveRef",
  "$dynamicRef",
  "allOf",
  "anyOf",
  "oneOf",
  "if",
  "then",
  "else",
  "properties",
  "patternProperties",
  "additionalProperties",
  "unevaluatedProperties",
  "items",
  "prefixItems",
  "additionalItems",
  "unevaluatedItems",
  "dependentSchemas",
  "propertyNames",
]);

/** Which error of one place to show: the most specific first. */
const PREFERENCE = ["required", "enum", "const", "type", "false"];

function decodePointer(location: string): string[] {
  return location
    .replace(/^#\/?/, "")
    .split("/")
    .filter((segment) => segment !== "")
    .map((segment) => decodeURIComponent(segment).replace(/~1/g, "/").replace(/~0/g, "~"));
}

function valueAt(document: unknown, segments: string[]): unknown {
  let value = document;
  for (const segment of segments) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<string, unknown>)[segment];
  }
  return value;
}

/** One detail per place that failed, worded for the user: the innermost errors, not their summaries. */
function toDetails(
  errors: OutputUnit[],
  document: unknown,
  path: string,
  role: "schema" | "input",
): ErrorDetail[] {
  const byPlace = new Map<string, { segments: string[]; unit: OutputUnit }>();
  const rank = (unit: OutputUnit) => {
    const i = PREFERENCE.indexOf(unit.keyword);
    return i === -1 ? PREFERENCE.length : i;
  };
  for (const unit of errors) {
    if (SUMMARY_KEYWORDS.has(unit.keyword)) continue;
    const segments = decodePointer(unit.instanceLocation);
    // A missing property is reported where it is missing: input.country, not input.
    const missing =
      unit.keyword === "required" ? /required property "(.*)"/.exec(unit.error)?.[1] : undefined;
    if (missing !== undefined) segments.push(missing);
    const place = segments.join("\u0000");
    const seen = byPlace.get(place);
    if (!seen || rank(unit) < rank(seen.unit)) byPlace.set(place, { segments, unit });
  }
  return [...byPlace.values()].map(({ segments, unit }) => {
    const at = [path, ...segments].join(".");
    return { path: at, message: `${at} ${describe(unit, valueAt(document, segments), segments, role)}` };
  });
}

const TYPE_NAMES: Record<string, string> = {
  array: "an array",
  boolean: "a boolean",
  integer: "an integer",
  null: "null",
  number: "a number",
  object: "a JSON object",
  string: "a string",
};

function describe(unit: OutputUnit, value: unknown, segments: string[], role: "schema" | "input"): string {
  const listed = /any of (\[.*\])\.$/.exec(unit.error)?.[1];
  switch (unit.keyword) {
    case "required":
      return role === "input" ? "is required by the input schema" : "is required";
    case "enum": {
      const options = listed
        ? (JSON.parse(listed) as unknown[]).map((v) => JSON.stringify(v)).join(", ")
        : "";
      if (role === "schema" && segments.at(-1) === "type") {
        return `is ${JSON.stringify(value)}, not a JSON Schema type; use one of ${options} (or an array of them)`;
      }
      return `must be one of ${options}`;
    }
    case "type": {
      const wanted = /Expected "(.*)"\.$/.exec(unit.error)?.[1]?.split('", "') ?? [];
      return `must be ${wanted.map((t) => TYPE_NAMES[t] ?? t).join(" or ")}, got ${kindOf(value)}`;
    }
    case "false":
      return role === "input" ? "is not allowed by the input schema" : "is not allowed here";
    default:
      return `does not match the ${role === "input" ? "input schema" : "JSON Schema meta-schema"} (${unit.keyword}): ${unit.error}`;
  }
}
