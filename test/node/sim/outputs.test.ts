// Outputs satisfy the output schema, carry a basis per top-level field, and are deterministic
// for a seed. The schema check here is an independent, minimal JSON Schema validator.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateOutput } from "../../../sim/outputs.ts";
import type { SimHandle } from "../../../sim/server.ts";
import type { JsonOutput, TaskOutput } from "../../../sim/types.ts";
import type { RunInput } from "../../../sim/validation.ts";
import { findProcessor, type Processor } from "../../../src/parallel/processors.ts";
import { sdk, startTestSim } from "./harness.ts";

type Schema = Record<string, unknown>;

/** Returns the paths where `value` breaks `schema` (types, required, enum, const, anyOf, $ref, items). */
function violations(value: unknown, schema: unknown, root: Schema, path = "$"): string[] {
  if (typeof schema !== "object" || schema === null) return [];
  const node = schema as Schema;
  if (typeof node.$ref === "string") {
    const target = node.$ref
      .slice(2)
      .split("/")
      .reduce<unknown>((at, part) => (at as Schema)[part], root);
    return violations(value, target, root, path);
  }
  if (Array.isArray(node.anyOf)) {
    return node.anyOf.some((branch) => violations(value, branch, root, path).length === 0)
      ? []
      : [`${path}: matches no anyOf branch`];
  }
  if ("const" in node && value !== node.const) return [`${path}: not the const`];
  if (Array.isArray(node.enum) && !node.enum.includes(value))
    return [`${path}: ${String(value)} not in enum`];
  const types =
    typeof node.type === "string" ? [node.type] : Array.isArray(node.type) ? (node.type as string[]) : [];
  const typeOk = (type: string): boolean =>
    type === "null"
      ? value === null
      : type === "integer"
        ? Number.isInteger(value)
        : type === "array"
          ? Array.isArray(value)
          : type === "object"
            ? typeof value === "object" && value !== null && !Array.isArray(value)
            : typeof value === type;
  if (types.length > 0 && !types.some(typeOk))
    return [`${path}: ${JSON.stringify(value)} is not ${types.join("|")}`];
  const problems: string[] = [];
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const record = value as Record<string, unknown>;
    for (const name of (node.required as string[] | undefined) ?? []) {
      if (!(name in record)) problems.push(`${path}.${name}: missing`);
    }
    const properties = (node.properties as Record<string, unknown> | undefined) ?? {};
    for (const [name, sub] of Object.entries(properties)) {
      if (name in record) problems.push(...violations(record[name], sub, root, `${path}.${name}`));
    }
    if (node.additionalProperties === false) {
      for (const name of Object.keys(record))
        if (!(name in properties)) problems.push(`${path}.${name}: extra`);
    }
  }
  if (Array.isArray(value)) {
    value.forEach((item, i) => {
      problems.push(...violations(item, node.items, root, `${path}[${i}]`));
    });
  }
  return problems;
}

const COMPANY_SCHEMA: Schema = {
  type: "object",
  properties: {
    name: { type: "string" },
    founded_year: { type: "integer" },
    revenue_usd: { type: "number" },
    is_public: { type: "boolean" },
    sector: { type: "string", enum: ["software", "hardware", "services"] },
    ticker: { type: ["string", "null"] },
    kind: { const: "company" },
    website: { anyOf: [{ type: "string" }, { type: "null" }] },
    headquarters: {
      type: "object",
      properties: { city: { type: "string" }, country: { $ref: "#/$defs/country" } },
      required: ["city", "country"],
      additionalProperties: false,
    },
    executives: {
      type: "array",
      items: {
        type: "object",
        properties: {
          name: { type: "string" },
          title: { type: "string", enum: ["CEO", "CFO", "CTO"] },
          tenure: { type: "object", properties: { years: { type: "integer" } }, required: ["years"] },
        },
        required: ["name", "title", "tenure"],
        additionalProperties: false,
      },
    },
    tags: { type: "array", items: { type: "string" } },
  },
  required: [
    "name",
    "founded_year",
    "revenue_usd",
    "is_public",
    "sector",
    "ticker",
    "kind",
    "website",
    "headquarters",
    "executives",
    "tags",
  ],
  additionalProperties: false,
  $defs: { country: { type: "string", enum: ["US", "FR", "JP"] } },
};

const core = findProcessor("core") as Processor;
const pro = findProcessor("pro") as Processor;
const lite = findProcessor("lite") as Processor;

function jsonInput(input: RunInput["input"], schema: Schema, processor = "core"): RunInput {
  return { input, processor, task_spec: { output_schema: { type: "json", json_schema: schema } } };
}

function expectBasisShape(output: TaskOutput): void {
  for (const basis of output.basis) {
    expect(basis.reasoning).toEqual(expect.any(String));
    expect(["high", "medium", "low"]).toContain(basis.confidence);
    expect(basis.citations.length).toBeGreaterThan(0);
    for (const citation of basis.citations) {
      expect(citation.url).toMatch(/^https:\/\/[^/]+\//);
      expect(citation.excerpts.length).toBeGreaterThan(0);
    }
  }
}

describe("JSON outputs", () => {
  it("satisfy the schema: required, types, enums, const, unions, $ref, nested objects and arrays", () => {
    for (let seed = 0; seed < 50; seed++) {
      const output = generateOutput({
        seed,
        input: jsonInput({ company: "Acme", seed }, COMPANY_SCHEMA),
        processor: core,
        elementBasis: false,
      }) as JsonOutput;
      expect(output.type).toBe("json");
      expect(violations(output.content, COMPANY_SCHEMA, COMPANY_SCHEMA)).toEqual([]);
      expect((output.content.executives as unknown[]).length).toBeGreaterThan(0);
    }
  });

  it("the validator above catches a wrong value (it can fail)", () => {
    expect(violations({ name: 1 }, COMPANY_SCHEMA, COMPANY_SCHEMA)).toContain("$.name: 1 is not string");
    expect(violations({ sector: "retail" }, COMPANY_SCHEMA, COMPANY_SCHEMA)).toContain(
      "$.sector: retail not in enum",
    );
  });

  it("carry one basis entry per top-level field, with citations, reasoning and confidence", () => {
    const output = generateOutput({
      seed: 1,
      input: jsonInput("Acme", COMPANY_SCHEMA),
      processor: core,
      elementBasis: false,
    });
    expect(output.basis.map((b) => b.field)).toEqual(Object.keys(COMPANY_SCHEMA.properties as Schema));
    expectBasisShape(output);
    expect(output.type === "json" && output.output_schema).toBeNull();
  });

  it("add per-element basis for arrays under the field-basis beta, with the same content", () => {
    const plain = generateOutput({
      seed: 1,
      input: jsonInput("Acme", COMPANY_SCHEMA),
      processor: core,
      elementBasis: false,
    });
    const beta = generateOutput({
      seed: 1,
      input: jsonInput("Acme", COMPANY_SCHEMA),
      processor: core,
      elementBasis: true,
    });
    expect(beta.content).toEqual(plain.content);
    const executives = (plain.content as Record<string, unknown[]>).executives ?? [];
    for (let i = 0; i < executives.length; i++)
      expect(beta.basis.map((b) => b.field)).toContain(`executives.${i}`);
    expect(beta.basis.filter((b) => !b.field.includes("."))).toEqual(plain.basis);
  });

  it("cite only include_domains when a source policy names them", () => {
    const input: RunInput = {
      ...jsonInput("Acme", COMPANY_SCHEMA),
      source_policy: { include_domains: ["example.org"] },
    };
    const output = generateOutput({ seed: 3, input, processor: core, elementBasis: false });
    const hosts = output.basis.flatMap((b) => b.citations.map((c) => new URL(c.url).hostname));
    expect(new Set(hosts)).toEqual(new Set(["example.org"]));
  });
});

describe("text and auto outputs", () => {
  it("a text schema or a bare string gives text with one 'output' basis", () => {
    for (const outputSchema of [
      "Describe the company",
      { type: "text" as const, description: "Describe it" },
    ]) {
      const output = generateOutput({
        seed: 1,
        input: { input: "Acme", processor: "core", task_spec: { output_schema: outputSchema } },
        processor: core,
        elementBasis: false,
      });
      expect(output.type).toBe("text");
      expect(output.content).toEqual(expect.stringContaining("Acme"));
      expect(output.basis.map((b) => b.field)).toEqual(["output"]);
      expectBasisShape(output);
    }
  });

  it("auto gives text below pro, and deep-research JSON with its schema from pro up", () => {
    const input: RunInput = { input: "The EV market", processor: "lite" };
    expect(generateOutput({ seed: 1, input, processor: lite, elementBasis: false }).type).toBe("text");
    const deep = generateOutput({
      seed: 1,
      input: { ...input, task_spec: { output_schema: { type: "auto" } } },
      processor: pro,
      elementBasis: false,
    });
    if (deep.type !== "json" || !deep.output_schema) throw new Error("expected JSON with output_schema");
    expect(violations(deep.content, deep.output_schema, deep.output_schema)).toEqual([]);
    const fields = deep.basis.map((b) => b.field);
    expect(fields).toEqual(
      expect.arrayContaining(["summary", "outlook", "outlook.short_term", "key_findings.0"]),
    );
  });
});

describe("determinism", () => {
  const input = jsonInput({ company: "Acme" }, COMPANY_SCHEMA);
  it("the same seed and input give the same output; another seed another", () => {
    const a = generateOutput({ seed: 42, input, processor: core, elementBasis: false });
    expect(generateOutput({ seed: 42, input, processor: core, elementBasis: false })).toEqual(a);
    expect(generateOutput({ seed: 43, input, processor: core, elementBasis: false })).not.toEqual(a);
  });

  describe("end to end, through the API", () => {
    let first: SimHandle;
    let second: SimHandle;
    beforeAll(async () => {
      first = await startTestSim({ seed: 9, run_duration_ms: 0 });
      second = await startTestSim({ seed: 9, run_duration_ms: 0 });
    });
    afterAll(async () => {
      await first.close();
      await second.close();
    });

    it("two sims with the same seed answer the same request with the same output", async () => {
      const results = [];
      for (const handle of [first, second]) {
        const client = sdk(handle);
        const run = await client.taskRun.create({
          input: { company: "Acme" },
          processor: "core",
          task_spec: { output_schema: { type: "json", json_schema: COMPANY_SCHEMA } },
        });
        results.push(await client.taskRun.result(run.run_id, { timeout: 5 }));
      }
      const [a, b] = results;
      expect(a?.output).toEqual(b?.output);
      expect(violations(a?.output.content, COMPANY_SCHEMA, COMPANY_SCHEMA)).toEqual([]);
      expect(a?.run.run_id).not.toBe(b?.run.run_id);
    });

    it("the field-basis beta on /result adds per-element basis", async () => {
      const client = sdk(first);
      const run = await client.taskRun.create({
        input: "Acme",
        processor: "core",
        task_spec: { output_schema: { type: "json", json_schema: COMPANY_SCHEMA } },
      });
      const plain = await client.taskRun.result(run.run_id, { timeout: 5 });
      const beta = await client.taskRun.result(run.run_id, { timeout: 5, betas: ["field-basis-2025-11-25"] });
      expect(plain.output.basis.some((b) => b.field.startsWith("executives."))).toBe(false);
      expect(beta.output.basis.some((b) => b.field === "executives.0")).toBe(true);
    });
  });
});

describe("outputs of a requested size (metadata sim_output_bytes)", () => {
  const sized = (input: RunInput, bytes: number): RunInput => ({
    ...input,
    metadata: { ...input.metadata, sim_output_bytes: String(bytes) },
  });
  const size = (output: TaskOutput) => Buffer.byteLength(JSON.stringify(output));

  it("makes a JSON output of about 5 MB that still fits its schema, the long field in its basis", () => {
    const output = generateOutput({
      seed: 1,
      input: sized(jsonInput({ company: "Acme" }, COMPANY_SCHEMA), 5_000_000),
      processor: core,
      elementBasis: false,
    }) as JsonOutput;
    expect(Math.abs(size(output) - 5_000_000)).toBeLessThan(1_000);
    expect(violations(output.content, COMPANY_SCHEMA, COMPANY_SCHEMA)).toEqual([]);
    const [long] = Object.entries(output.content).filter(
      ([, v]) => typeof v === "string" && v.length > 1_000_000,
    );
    expect(long).toBeDefined();
    expect(output.basis.find((b) => b.field === long?.[0])?.reasoning).toContain("5000000 bytes");
    expectBasisShape(output);
  });

  it("makes a text output of about 50 MB for a text schema", () => {
    const output = generateOutput({
      seed: 1,
      input: sized(
        { input: "The EV market", processor: "lite", task_spec: { output_schema: "A report." } },
        50_000_000,
      ),
      processor: lite,
      elementBasis: false,
    });
    expect(output.type).toBe("text");
    expect(Math.abs(size(output) - 50_000_000)).toBeLessThan(1_000);
    expect(output.basis).toHaveLength(1);
  });

  it("leaves an output alone without the key, and makes the same output for the same request", () => {
    const input = jsonInput({ company: "Acme" }, COMPANY_SCHEMA);
    const plain = generateOutput({ seed: 1, input, processor: core, elementBasis: false });
    expect(size(plain)).toBeLessThan(10_000);
    const a = generateOutput({ seed: 1, input: sized(input, 300_000), processor: core, elementBasis: false });
    expect(
      generateOutput({ seed: 1, input: sized(input, 300_000), processor: core, elementBasis: false }),
    ).toEqual(a);
  });
});
