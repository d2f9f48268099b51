// The 422/403 checks of reference §9 and §11, and the warnings of §5/§9.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SimHandle } from "../../../sim/server.ts";
import { checkCreateRequest, parseBetas } from "../../../sim/validation.ts";
import { call, startTestSim } from "./harness.ts";

type Body = Record<string, unknown>;

function withSchema(jsonSchema: unknown, extra: Body = {}): Body {
  return {
    input: "x",
    processor: "core",
    task_spec: { output_schema: { type: "json", json_schema: jsonSchema } },
    ...extra,
  };
}

const ok = (properties: Body, extra: Body = {}): Body => ({
  type: "object",
  properties,
  required: Object.keys(properties),
  additionalProperties: false,
  ...extra,
});

/** Nests `levels` objects (the root counts as one). */
function nested(levels: number): Body {
  let node: Body = { type: "string" };
  for (let i = 1; i < levels; i++) node = ok({ inner: node });
  return ok({ inner: node });
}

function errorsOf(body: unknown, beta?: string): string[] {
  const check = checkCreateRequest(body, beta);
  return check.ok ? [] : check.issues.map((issue) => `${check.status} ${issue.loc.join(".")}: ${issue.msg}`);
}

function warningsOf(body: unknown): string[] {
  const check = checkCreateRequest(body, undefined);
  if (!check.ok) throw new Error(`expected no errors, got ${JSON.stringify(check.issues)}`);
  return check.warnings.map((w) => `${w.type}: ${w.message}`);
}

describe("request shape (422)", () => {
  it.each<[string, unknown]>([
    ["missing input", { processor: "core" }],
    ["missing processor", { input: "x" }],
    ["input of the wrong type", { input: 3, processor: "core" }],
    ["a body that is not an object", ["input"]],
    [
      "a metadata key over 16 characters",
      { input: "x", processor: "core", metadata: { abcdefghijklmnopq: "v" } },
    ],
    [
      "a metadata value over 512 characters",
      { input: "x", processor: "core", metadata: { k: "v".repeat(513) } },
    ],
    ["a nested metadata value", { input: "x", processor: "core", metadata: { k: { a: 1 } } }],
    ["a null metadata value", { input: "x", processor: "core", metadata: { k: null } }],
    [
      "an output_schema of an unknown type",
      { input: "x", processor: "core", task_spec: { output_schema: { type: "xml" } } },
    ],
    [
      "a json output_schema without json_schema",
      { input: "x", processor: "core", task_spec: { output_schema: { type: "json" } } },
    ],
    ["a task_spec without output_schema", { input: "x", processor: "core", task_spec: {} }],
    [
      "over 200 source-policy domains",
      {
        input: "x",
        processor: "core",
        source_policy: {
          include_domains: Array.from({ length: 150 }, (_, i) => `a${i}.com`),
          exclude_domains: Array.from({ length: 51 }, (_, i) => `b${i}.com`),
        },
      },
    ],
    [
      "a domain with a scheme",
      { input: "x", processor: "core", source_policy: { include_domains: ["https://a.com"] } },
    ],
    [
      "a domain with a path",
      { input: "x", processor: "core", source_policy: { exclude_domains: ["a.com/news"] } },
    ],
    [
      "an after_date that is not a date",
      { input: "x", processor: "core", source_policy: { after_date: "2024-13-45" } },
    ],
    [
      "a location that is not alpha-2",
      { input: "x", processor: "core", advanced_settings: { location: "usa" } },
    ],
    [
      "a webhook url that is not http(s)",
      { input: "x", processor: "core", webhook: { url: "ftp://a.com/h" } },
    ],
    [
      "an unknown webhook event type",
      {
        input: "x",
        processor: "core",
        webhook: { url: "https://a.com/h", event_types: ["task_run.progress"] },
      },
    ],
    ["an mcp server without a url", { input: "x", processor: "core", mcp_servers: [{ name: "m" }] }],
    ["enable_events that is not a boolean", { input: "x", processor: "core", enable_events: "yes" }],
  ])("refuses %s", (_label, body) => {
    expect(errorsOf(body, "webhook-2025-08-12")[0]).toMatch(/^422 body/);
  });

  it("accepts metadata of strings, numbers and booleans at the limits", () => {
    expect(
      errorsOf({
        input: "x",
        processor: "core",
        metadata: { abcdefghijklmnop: "v".repeat(512), n: 1.5, b: false },
      }),
    ).toEqual([]);
  });

  it("accepts a full, valid request", () => {
    const body = {
      ...withSchema(ok({ gdp: { type: "string" } })),
      input: { country: "France" },
      metadata: { k: "v" },
      source_policy: {
        include_domains: ["example.com", ".gov"],
        exclude_domains: [],
        after_date: "2024-01-01",
      },
      advanced_settings: { location: "us" },
      previous_interaction_id: "trun_9907962f83aa4d9d98fd7f4bf745d654",
      mcp_servers: [
        { type: "url", name: "m", url: "https://mcp.example.com", headers: { a: "b" }, allowed_tools: ["t"] },
      ],
      enable_events: true,
      memory_scope_key: null,
      webhook: { url: "https://example.com/h", event_types: ["task_run.status"] },
    };
    expect(errorsOf(body, "webhook-2025-08-12")).toEqual([]);
  });
});

describe("processor and beta", () => {
  it("an unknown processor is 403, after the body's shape", () => {
    expect(errorsOf({ input: "x", processor: "hyper" })).toEqual([
      "403 body.processor: unknown processor 'hyper'",
    ]);
    expect(errorsOf({ input: "x", processor: "hyper", metadata: { k: null } })[0]).toMatch(/^422/);
    for (const processor of ["lite", "core2x-fast", "ultra8x", "deepv2"])
      expect(errorsOf({ input: "x", processor })).toEqual([]);
  });

  it("a webhook needs parallel-beta: webhook-2025-08-12, alone or in a list", () => {
    const body = { input: "x", processor: "core", webhook: { url: "https://example.com/h" } };
    expect(errorsOf(body)).toEqual([
      "422 header.parallel-beta: webhook requires the header parallel-beta: webhook-2025-08-12",
    ]);
    expect(errorsOf(body, "events-sse-2025-07-24")).toHaveLength(1);
    expect(errorsOf(body, "webhook-2025-08-12")).toEqual([]);
    expect(errorsOf(body, "events-sse-2025-07-24,webhook-2025-08-12")).toEqual([]);
    expect(errorsOf(body, "events-sse-2025-07-24, webhook-2025-08-12")).toEqual([]);
    expect([...parseBetas(" a , ,b,")]).toEqual(["a", "b"]);
  });
});

describe("output schema rules (422)", () => {
  it.each<[string, unknown]>([
    ["a root that is not an object", { type: "array", items: { type: "string" }, properties: {} }],
    ["a root without properties", { type: "object" }],
    ["a root with anyOf", { ...ok({ a: { type: "string" } }), anyOf: [{ type: "object" }] }],
    ["a standalone null type", ok({ a: { type: "null" } })],
    ["nesting deeper than 5 levels", nested(6)],
    [
      "more than 100 properties",
      ok(Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`p${i}`, { type: "string" }]))),
    ],
    ["an unsupported keyword (minLength)", ok({ a: { type: "string", minLength: 1 } })],
    ["an unsupported keyword (format)", ok({ a: { type: "string", format: "date" } })],
    [
      "an unsupported keyword in array items (pattern)",
      ok({ a: { type: "array", items: { type: "string", pattern: "x" } } }),
    ],
    [
      "more than 500 enum values",
      ok({ a: { type: "string", enum: Array.from({ length: 501 }, (_, i) => `v${i}`) } }),
    ],
    [
      "a large enum over 7,500 characters",
      ok({
        a: { type: "string", enum: Array.from({ length: 260 }, (_, i) => `value-${i}-`.padEnd(30, "x")) },
      }),
    ],
  ])("refuses %s", (_label, schema) => {
    const errors = errorsOf(withSchema(schema));
    expect(errors.length).toBeGreaterThan(0);
    expect(errors[0]).toMatch(/^422 body\.task_spec\.output_schema\.json_schema/);
  });

  it("accepts the limits themselves: depth 5, 100 properties, nulls inside unions", () => {
    expect(errorsOf(withSchema(nested(5)))).toEqual([]);
    expect(
      errorsOf(
        withSchema(
          ok(Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`p${i}`, { type: "string" }]))),
        ),
      ),
    ).toEqual([]);
    expect(
      errorsOf(
        withSchema(
          ok({ a: { type: ["string", "null"] }, b: { anyOf: [{ type: "string" }, { type: "null" }] } }),
        ),
      ),
    ).toEqual([]);
  });

  it("refuses a task spec over 15,000 characters and spec + input over 25,000", () => {
    const longSpec = { input: "x", processor: "core", task_spec: { output_schema: "d".repeat(15_001) } };
    expect(errorsOf(longSpec)[0]).toMatch(/^422 body\.task_spec: task spec is \d+ characters/);
    const longInput = {
      input: "i".repeat(20_000),
      processor: "core",
      task_spec: { output_schema: "d".repeat(5_001) },
    };
    expect(errorsOf(longInput)[0]).toMatch(/^422 body: task spec \+ input/);
    expect(errorsOf({ input: "i".repeat(24_000), processor: "core" })).toEqual([]);
  });
});

describe("warnings", () => {
  it("a schema that follows every rule has none", () => {
    expect(warningsOf(withSchema(ok({ gdp: { type: "string" } })))).toEqual([]);
  });

  it("warns about properties missing from required, and objects without additionalProperties: false", () => {
    const warnings = warningsOf(
      withSchema({
        type: "object",
        properties: { a: { type: "string" }, b: { type: "string" } },
        required: ["a"],
      }),
    );
    expect(warnings).toEqual([
      expect.stringMatching(/^spec_validation_warning: properties not in 'required': b;/),
      "spec_validation_warning: objects should set 'additionalProperties': false",
    ]);
  });

  it("warns about basis-like field names", () => {
    const warnings = warningsOf(withSchema(ok({ answer: { type: "string" }, sources: { type: "string" } })));
    expect(warnings).toEqual([expect.stringContaining("field 'sources' looks like research basis")]);
  });

  it("warns when the output has more fields than the processor handles well", () => {
    const three = ok({ a: { type: "string" }, b: { type: "string" }, c: { type: "string" } });
    expect(warningsOf(withSchema(three, { processor: "lite" }))).toEqual([
      "spec_validation_warning: the output schema has 3 fields; processor 'lite' handles about 2 well",
    ]);
    expect(warningsOf(withSchema(three, { processor: "base" }))).toEqual([]);
  });

  it("warns (input_validation_warning) when the input does not fit its input_schema", () => {
    const body = (input: unknown): Body => ({
      input,
      processor: "core",
      task_spec: {
        output_schema: "Find the GDP",
        input_schema: {
          type: "json",
          json_schema: ok({ country: { type: "string" }, year: { type: "integer" } }),
        },
      },
    });
    expect(warningsOf(body({ country: "France", year: 2023 }))).toEqual([]);
    expect(warningsOf(body({ country: "France", year: "2023" }))).toEqual([
      "input_validation_warning: input property 'year' is not of type integer",
    ]);
    expect(warningsOf(body({ year: 2023 }))).toEqual([
      "input_validation_warning: input is missing required property 'country'",
    ]);
  });
});

describe("over HTTP", () => {
  let sim: SimHandle;
  beforeAll(async () => {
    // Runs stay active for the whole file, so a timeout=0 result is always a 408.
    sim = await startTestSim({ run_duration_ms: 60_000 });
  });
  afterAll(() => sim.close());

  it("a body that is not JSON is a 422 in the error envelope", async () => {
    const answer = await call(sim, "POST", "/v1/tasks/runs", { body: "{not json" });
    expect(answer.status).toBe(422);
    expect(answer.json).toMatchObject({
      type: "error",
      error: {
        message: "Unprocessable content: request validation error",
        detail: { errors: [{ type: "json_invalid" }] },
      },
    });
  });

  it("warnings come back on the run", async () => {
    const answer = await call(sim, "POST", "/v1/tasks/runs", {
      body: withSchema({ type: "object", properties: { a: { type: "string" } } }),
    });
    expect(answer.status).toBe(202);
    expect(answer.json).toMatchObject({
      warnings: [{ type: "spec_validation_warning" }, { type: "spec_validation_warning" }],
    });
  });

  it("the result timeout must be a non-negative integer", async () => {
    const created = await call(sim, "POST", "/v1/tasks/runs", { body: { input: "x", processor: "lite" } });
    const runId = (created.json as { run_id: string }).run_id;
    for (const bad of ["-1", "abc", "1.5"]) {
      expect((await call(sim, "GET", `/v1/tasks/runs/${runId}/result?timeout=${bad}`)).status).toBe(422);
    }
    expect((await call(sim, "GET", `/v1/tasks/runs/${runId}/result?timeout=0`)).status).toBe(408);
  });

  it("ignores X-Stainless-* headers and unknown body fields", async () => {
    const answer = await call(sim, "POST", "/v1/tasks/runs", {
      body: { input: "x", processor: "lite", something_new: 1 },
      headers: {
        "X-Stainless-Lang": "js",
        "X-Stainless-Retry-Count": "0",
        "X-Stainless-Poll-Helper": "true",
      },
    });
    expect(answer.status).toBe(202);
  });
});
