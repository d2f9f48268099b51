// Deterministic research outputs. Content satisfies the run's output schema (required
// properties, types, enums, const, nested objects and arrays, anyOf, local $ref); text schemas
// get text; auto schemas get a deep-research style JSON object on pro and above, text below
// (§3: "Deep Research style outputs only in processors pro and above"). Everything is a pure
// function of the seed and the run's input, so the same request under the same SIM_SEED gets
// the same output whatever order runs complete in.

import type { Processor } from "../src/parallel/processors.ts";
import { hashString, Prng } from "./faults.ts";
import type { Citation, FieldBasis, JsonOutput, TaskOutput, TextOutput } from "./types.ts";
import type { RunInput } from "./validation.ts";

export type OutputKind =
  | { kind: "json"; schema: Record<string, unknown> }
  | { kind: "text"; description: string | null }
  | { kind: "auto" };

export function outputKind(input: RunInput): OutputKind {
  const spec = input.task_spec?.output_schema;
  if (spec === undefined) return { kind: "auto" };
  if (typeof spec === "string") return { kind: "text", description: spec };
  if ("json_schema" in spec) return { kind: "json", schema: spec.json_schema };
  if (spec.type === "auto") return { kind: "auto" };
  return { kind: "text", description: "description" in spec ? (spec.description ?? null) : null };
}

/** pro and up (by price, so the -fast variants and the special processors sort themselves). */
export function isProOrAbove(processor: Processor): boolean {
  return processor.usdPer1000Runs >= 100;
}

export const AUTO_OUTPUT_SCHEMA: Readonly<Record<string, unknown>> = Object.freeze({
  type: "object",
  properties: {
    summary: { type: "string", description: "A short answer to the research question" },
    key_findings: {
      type: "array",
      items: {
        type: "object",
        properties: { title: { type: "string" }, detail: { type: "string" } },
        required: ["title", "detail"],
        additionalProperties: false,
      },
    },
    outlook: {
      type: "object",
      properties: { short_term: { type: "string" }, long_term: { type: "string" } },
      required: ["short_term", "long_term"],
      additionalProperties: false,
    },
  },
  required: ["summary", "key_findings", "outlook"],
  additionalProperties: false,
});

export interface OutputRequest {
  seed: number;
  input: RunInput;
  processor: Processor;
  /** Beta field-basis-2025-11-25: per-element basis entries for array fields. */
  elementBasis: boolean;
}

export function generateOutput(request: OutputRequest): TaskOutput {
  const { input, processor } = request;
  const runSeed = hashString(
    JSON.stringify([input.input, input.task_spec ?? null, processor.name]),
    request.seed,
  );
  const context: Context = {
    root: {},
    rng: new Prng(runSeed),
    runSeed,
    subject: subjectOf(input.input),
    domains: citationDomains(input),
  };
  const kind = outputKind(input);
  const size = requestedSize(input);
  if (kind.kind === "text" || (kind.kind === "auto" && !isProOrAbove(processor))) {
    const text = textOutput(context, kind.kind === "text" ? kind.description : null);
    return size === null ? text : padText(context, text, size);
  }
  const schema = kind.kind === "json" ? kind.schema : { ...AUTO_OUTPUT_SCHEMA };
  context.root = schema;
  const generated = valueFor(context, schema, "output", 0);
  const content = isRecord(generated) ? generated : { output: generated };
  const output: JsonOutput = {
    type: "json",
    content,
    basis: jsonBasis(context, content, {
      elements: request.elementBasis || kind.kind === "auto",
      nested: kind.kind === "auto",
    }),
    output_schema: kind.kind === "auto" ? schema : null,
    mcp_tool_calls: null,
  };
  return size === null ? output : padJson(context, output, schema, size);
}

/** Metadata `sim_output_bytes` (a decimal string, e.g. "5000000"): the output's JSON is about that large. */
export const OUTPUT_BYTES_METADATA_KEY = "sim_output_bytes";

function requestedSize(input: RunInput): number | null {
  const raw = input.metadata?.[OUTPUT_BYTES_METADATA_KEY];
  if (raw === undefined) return null;
  const bytes = Number(raw);
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : null;
}

/** Plain ASCII with nothing JSON escapes, so each character adds exactly one byte. */
function filler(context: Context, field: string, length: number): string {
  if (length <= 0) return "";
  const sentence = ` Further ${humanize(field).toLowerCase()} of ${context.subject.replace(/[^A-Za-z0-9 .,-]/g, "")}, per public filings.`;
  return sentence.repeat(Math.ceil(length / sentence.length)).slice(0, length);
}

const jsonBytes = (value: unknown) => Buffer.byteLength(JSON.stringify(value));

function padText(context: Context, output: TextOutput, size: number): TextOutput {
  // "\n\n" is four bytes of JSON.
  const missing = size - jsonBytes(output) - 4;
  if (missing <= 0) return output;
  return { ...output, content: `${output.content}\n\n${filler(context, "finding", missing).trimStart()}` };
}

/**
 * Grows one free-text string field of the content (one the schema leaves unconstrained) until the
 * output's JSON is about `size` bytes; its basis entry says so. With no such field the basis grows.
 */
function padJson(
  context: Context,
  output: JsonOutput,
  schema: Record<string, unknown>,
  size: number,
): JsonOutput {
  const missing = size - jsonBytes(output);
  if (missing <= 0) return output;
  const content = structuredClone(output.content);
  const slot = freeTextSlot(context.root, schema, content, "output", 0);
  if (slot) {
    slot.set(`${slot.get()}${filler(context, slot.field, missing)}`);
    const basis = output.basis.map((entry) =>
      entry.field === slot.topField
        ? { ...entry, reasoning: `${entry.reasoning} The full text runs to about ${size} bytes.` }
        : entry,
    );
    return { ...output, content, basis };
  }
  const [first, ...rest] = output.basis;
  if (!first) return output;
  return {
    ...output,
    basis: [{ ...first, reasoning: `${first.reasoning}${filler(context, first.field, missing)}` }, ...rest],
  };
}

interface Slot {
  field: string;
  topField: string;
  get(): string;
  set(value: string): void;
}

function freeTextSlot(
  root: Record<string, unknown>,
  schema: unknown,
  value: unknown,
  topField: string,
  depth: number,
): Slot | null {
  if (depth > MAX_GENERATION_DEPTH || !isRecord(schema)) return null;
  if (typeof schema.$ref === "string")
    return freeTextSlot(root, resolveRef(root, schema.$ref), value, topField, depth + 1);
  if (isRecord(value) && isRecord(schema.properties)) {
    for (const [name, sub] of Object.entries(schema.properties)) {
      const top = depth === 0 ? name : topField;
      const resolved = isRecord(sub) && typeof sub.$ref === "string" ? resolveRef(root, sub.$ref) : sub;
      if (typeof value[name] === "string" && isFreeText(resolved)) {
        return {
          field: name,
          topField: top,
          get: () => value[name] as string,
          set: (v) => (value[name] = v),
        };
      }
      const inner = freeTextSlot(root, resolved, value[name], top, depth + 1);
      if (inner) return inner;
    }
  }
  if (Array.isArray(value) && value.length > 0 && isRecord(schema.items)) {
    return freeTextSlot(root, schema.items, value[0], topField, depth + 1);
  }
  return null;
}

function isFreeText(schema: unknown): boolean {
  if (!isRecord(schema)) return false;
  const constrained = ["enum", "const", "pattern", "format", "maxLength", "anyOf", "oneOf", "allOf"];
  return typesOf(schema).includes("string") && !constrained.some((keyword) => keyword in schema);
}

interface Context {
  root: Record<string, unknown>;
  rng: Prng;
  runSeed: number;
  subject: string;
  domains: string[];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function subjectOf(input: RunInput["input"]): string {
  const text =
    typeof input === "string"
      ? input
      : Object.values(input)
          .filter((v) => typeof v === "string" || typeof v === "number")
          .join(" ") || JSON.stringify(input);
  const oneLine = text.replace(/\s+/g, " ").trim();
  return oneLine.length > 80 ? `${oneLine.slice(0, 77)}...` : oneLine || "the task";
}

const DEFAULT_DOMAINS = [
  "en.wikipedia.org",
  "www.reuters.com",
  "www.sec.gov",
  "www.statista.com",
  "www.bloomberg.com",
  "www.ft.com",
];

function coveredBy(host: string, rule: string): boolean {
  const bare = rule.toLowerCase();
  if (bare.startsWith(".")) return host.endsWith(bare);
  return host === bare || host.endsWith(`.${bare}`);
}

/** Citations respect the source policy: include_domains wins, else defaults minus exclude_domains. */
function citationDomains(input: RunInput): string[] {
  const include = input.source_policy?.include_domains ?? [];
  if (include.length > 0) return include.map((d) => (d.startsWith(".") ? `research${d}` : d.toLowerCase()));
  const exclude = input.source_policy?.exclude_domains ?? [];
  const allowed = DEFAULT_DOMAINS.filter((host) => !exclude.some((rule) => coveredBy(host, rule)));
  return allowed.length > 0 ? allowed : ["research.example.org"];
}

function slug(text: string): string {
  return (
    text
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, "-")
      .replace(/^-+|-+$/g, "")
      .slice(0, 48) || "topic"
  );
}

function humanize(name: string): string {
  const words = name
    .replace(/[_-]+/g, " ")
    .replace(/([a-z])([A-Z])/g, "$1 $2")
    .trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function typesOf(node: Record<string, unknown>): string[] {
  if (typeof node.type === "string") return [node.type];
  if (Array.isArray(node.type)) return node.type.filter((t): t is string => typeof t === "string");
  return [];
}

function resolveRef(root: Record<string, unknown>, ref: string): unknown {
  if (!ref.startsWith("#")) return undefined;
  let node: unknown = root;
  for (const raw of ref.slice(1).split("/").filter(Boolean)) {
    const part = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    node = isRecord(node) ? node[part] : undefined;
  }
  return node;
}

const MAX_GENERATION_DEPTH = 16;

function valueFor(context: Context, schema: unknown, name: string, depth: number): unknown {
  if (depth > MAX_GENERATION_DEPTH) return null;
  if (!isRecord(schema)) return stringFor(context, name);
  if (typeof schema.$ref === "string") {
    return valueFor(context, resolveRef(context.root, schema.$ref), name, depth + 1);
  }
  if ("const" in schema) return schema.const;
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return context.rng.pick(schema.enum);
  for (const union of ["anyOf", "oneOf"] as const) {
    const branches = schema[union];
    if (Array.isArray(branches) && branches.length > 0) {
      const useful = branches.find((b) => !(isRecord(b) && typesOf(b).every((t) => t === "null")));
      return valueFor(context, useful ?? branches[0], name, depth + 1);
    }
  }
  if (Array.isArray(schema.allOf)) return valueFor(context, mergeAllOf(context, schema), name, depth + 1);

  const types = typesOf(schema).filter((t) => t !== "null");
  const type =
    types[0] ??
    (typesOf(schema).includes("null")
      ? "null"
      : isRecord(schema.properties)
        ? "object"
        : "items" in schema
          ? "array"
          : "string");
  switch (type) {
    case "object": {
      const result: Record<string, unknown> = {};
      const properties = isRecord(schema.properties) ? schema.properties : {};
      for (const [property, sub] of Object.entries(properties)) {
        result[property] = valueFor(context, sub, property, depth + 1);
      }
      return result;
    }
    case "array": {
      const prefix = Array.isArray(schema.prefixItems) ? schema.prefixItems : [];
      const count = Math.max(prefix.length, context.rng.int(1, 3));
      const items = Array.isArray(schema.items) ? schema.items : [];
      return Array.from({ length: count }, (_, i) =>
        valueFor(
          context,
          prefix[i] ?? items[i] ?? (isRecord(schema.items) ? schema.items : {}),
          name,
          depth + 1,
        ),
      );
    }
    case "integer":
      return context.rng.int(1, 1_000);
    case "number":
      return Math.round(context.rng.next() * 100_000) / 100;
    case "boolean":
      return context.rng.chance(0.5);
    case "null":
      return null;
    default:
      return stringFor(context, name);
  }
}

function mergeAllOf(context: Context, schema: Record<string, unknown>): Record<string, unknown> {
  const properties: Record<string, unknown> = {};
  const required: string[] = [];
  const branches = Array.isArray(schema.allOf) ? schema.allOf : [];
  for (const raw of branches) {
    const branch = isRecord(raw) && typeof raw.$ref === "string" ? resolveRef(context.root, raw.$ref) : raw;
    if (!isRecord(branch)) continue;
    if (isRecord(branch.properties)) Object.assign(properties, branch.properties);
    if (Array.isArray(branch.required))
      required.push(...branch.required.filter((r) => typeof r === "string"));
  }
  const { allOf: _allOf, ...rest } = schema;
  return {
    ...rest,
    type: "object",
    properties: { ...properties, ...(isRecord(rest.properties) ? rest.properties : {}) },
    required,
  };
}

function stringFor(context: Context, name: string): string {
  const { rng, subject } = context;
  const domain = rng.pick(context.domains) ?? "research.example.org";
  if (/url|website|link|homepage/i.test(name)) return `https://${domain}/${slug(subject)}`;
  if (/email/i.test(name)) return `research@${domain.replace(/^www\./, "")}`;
  if (/date|founded|year/i.test(name)) {
    const year = rng.int(1950, 2025);
    const month = String(rng.int(1, 12)).padStart(2, "0");
    const day = String(rng.int(1, 28)).padStart(2, "0");
    return /year/i.test(name) ? String(year) : `${year}-${month}-${day}`;
  }
  const flavour = rng.pick([
    "per public filings",
    "per recent reporting",
    "per company statements",
    "per analyst notes",
  ] as const);
  return `${humanize(name)} of ${subject} (${flavour})`;
}

function textOutput(context: Context, description: string | null): TextOutput {
  const { rng, subject } = context;
  const task = description?.trim() || "the research question";
  const findings = rng.int(2, 4);
  const lines = [
    `Simulated research for ${subject}.`,
    "",
    `Task: ${task}`,
    "",
    ...Array.from({ length: findings }, (_, i) => `- Finding ${i + 1}: ${stringFor(context, "finding")}`),
  ];
  return {
    type: "text",
    content: lines.join("\n"),
    basis: [basisEntry(context, "output")],
    mcp_tool_calls: null,
  };
}

function jsonBasis(
  context: Context,
  content: Record<string, unknown>,
  options: { elements: boolean; nested: boolean },
): FieldBasis[] {
  const basis: FieldBasis[] = [];
  for (const [field, value] of Object.entries(content)) {
    basis.push(basisEntry(context, field));
    if (options.nested && isRecord(value)) {
      for (const sub of Object.keys(value)) basis.push(basisEntry(context, `${field}.${sub}`));
    }
    if (options.elements && Array.isArray(value)) {
      value.forEach((_, i) => {
        basis.push(basisEntry(context, `${field}.${i}`));
      });
    }
  }
  return basis;
}

/** Each entry draws from its own generator so adding entries never changes the others. */
function basisEntry(context: Context, field: string): FieldBasis {
  const rng = new Prng(hashString(`basis ${field}`, context.runSeed));
  const count = rng.int(1, 3);
  const citations: Citation[] = Array.from({ length: count }, (_, i) => {
    const domain = rng.pick(context.domains) ?? "research.example.org";
    return {
      url: `https://${domain}/${slug(context.subject)}${i === 0 ? "" : `-${i + 1}`}`,
      title: `${humanize(field.split(".")[0] ?? field)}: ${context.subject}`,
      excerpts: [`${context.subject}: a passage that supports the ${field.replace(/\./g, " ")} finding.`],
    };
  });
  return {
    field,
    citations,
    reasoning: `Simulated: '${field}' for ${context.subject} agrees across ${count} source${count === 1 ? "" : "s"}.`,
    confidence: rng.pick(["high", "high", "medium", "low"] as const),
  };
}
