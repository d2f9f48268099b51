import { env } from "cloudflare:workers";
import { HttpResponse } from "msw";
import { describe, expect, it } from "vitest";
import {
  api,
  createTenant,
  expectJson,
  fakeParallel,
  postJson,
  TEXT_RUN,
  type Tenant,
  taskRun,
} from "./harness";

interface Problems {
  error: { code: string; message: string; details: Array<{ path: string; message: string }> };
}

async function refused(tenant: Tenant, body: unknown): Promise<Problems["error"]> {
  const parallel = fakeParallel();
  const before = await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE api_key_id = ?")
    .bind(tenant.id)
    .first<{ n: number }>();
  const response = await postJson("/v1/runs", body, tenant.auth);
  const problems = await expectJson<Problems>(response, 422);
  // Nothing stored, no money spent.
  expect(parallel.calls).toHaveLength(0);
  const after = await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE api_key_id = ?")
    .bind(tenant.id)
    .first<{ n: number }>();
  expect(after?.n).toBe(before?.n);
  expect(problems.error.code).toBe("validation_failed");
  return problems.error;
}

const jsonSpec = (json_schema: unknown, extra: Record<string, unknown> = {}) => ({
  ...TEXT_RUN,
  task_spec: { output_schema: { type: "json", json_schema }, ...extra },
});

/** An object schema nested `levels` deep: {a: {a: {…}}}. */
function nested(levels: number): Record<string, unknown> {
  let schema: Record<string, unknown> = { type: "string" };
  for (let i = 0; i < levels; i++) schema = { type: "object", properties: { a: schema } };
  return schema;
}

describe("checks at the edge", () => {
  it("refuses an unknown processor, naming the known ones", async () => {
    const error = await refused(await createTenant(), { ...TEXT_RUN, processor: "fastest" });
    expect(error.details).toEqual([
      { path: "processor", message: expect.stringContaining("lite, base, core") },
    ]);
    expect(error.message).toContain('unknown processor "fastest"');
  });

  it("accepts every processor of the catalogue, fast variants included", async () => {
    const tenant = await createTenant();
    fakeParallel();
    for (const processor of ["lite", "ultra8x", "core2x-fast", "pro-fast", "vision", "deepv2"]) {
      await expectJson(await postJson("/v1/runs", { ...TEXT_RUN, processor }, tenant.auth), 202);
    }
  });

  it("refuses a missing input and a missing processor, both at once", async () => {
    const error = await refused(await createTenant(), {});
    expect(error.details.map((d) => d.path).sort()).toEqual(["input", "processor"]);
  });

  it("refuses fields it does not know instead of dropping them", async () => {
    const error = await refused(await createTenant(), { ...TEXT_RUN, procesor: "base" });
    expect(error.details[0]?.message).toContain("procesor");
  });

  it("refuses a task spec over 15,000 characters and spec plus input over 25,000", async () => {
    const tenant = await createTenant();
    const big = await refused(tenant, { ...TEXT_RUN, task_spec: { output_schema: "x".repeat(15_001) } });
    expect(big.details).toContainEqual({ path: "task_spec", message: expect.stringContaining("15000") });
    const sum = await refused(tenant, {
      processor: "base",
      input: "y".repeat(12_000),
      task_spec: { output_schema: "x".repeat(14_000) },
    });
    expect(sum.details).toContainEqual({ path: "input", message: expect.stringContaining("25000") });
  });

  it("refuses schemas deeper than 5 levels, and accepts 5", async () => {
    const tenant = await createTenant();
    fakeParallel();
    await expectJson(await postJson("/v1/runs", jsonSpec(nested(5)), tenant.auth), 202);
    const error = await refused(tenant, jsonSpec(nested(6)));
    expect(error.details).toContainEqual({
      path: "task_spec.output_schema.json_schema",
      message: expect.stringContaining("6 levels"),
    });
  });

  it("counts arrays as levels", async () => {
    const tooDeep = { type: "array", items: nested(5) };
    const error = await refused(
      await createTenant(),
      jsonSpec({ type: "object", properties: { list: tooDeep } }),
    );
    expect(error.details[0]?.message).toContain("7 levels");
  });

  it("refuses more than 100 properties in all", async () => {
    const properties = Object.fromEntries(
      Array.from({ length: 101 }, (_, i) => [`f${i}`, { type: "string" }]),
    );
    const error = await refused(await createTenant(), jsonSpec({ type: "object", properties }));
    expect(error.details[0]?.message).toContain("101 properties");
  });

  it("refuses a root that is not an object, has no properties, or uses anyOf", async () => {
    const error = await refused(await createTenant(), jsonSpec({ type: "array", anyOf: [] }));
    expect(error.details.map((d) => d.path)).toEqual(
      expect.arrayContaining([
        "task_spec.output_schema.json_schema.type",
        "task_spec.output_schema.json_schema.properties",
        "task_spec.output_schema.json_schema.anyOf",
      ]),
    );
  });

  it("refuses unsupported keywords, each at its path", async () => {
    const schema = {
      type: "object",
      properties: {
        name: { type: "string", minLength: 1, pattern: "^a" },
        tags: { type: "array", items: { type: "string" }, maxItems: 3 },
      },
    };
    const error = await refused(await createTenant(), jsonSpec(schema));
    expect(error.details.map((d) => d.path).sort()).toEqual([
      "task_spec.output_schema.json_schema.properties.name.minLength",
      "task_spec.output_schema.json_schema.properties.name.pattern",
      "task_spec.output_schema.json_schema.properties.tags.maxItems",
    ]);
  });

  it("allows anyOf inside an output schema but not in an input schema", async () => {
    const tenant = await createTenant();
    fakeParallel();
    const union = { type: "object", properties: { v: { anyOf: [{ type: "string" }, { type: "null" }] } } };
    await expectJson(await postJson("/v1/runs", jsonSpec(union), tenant.auth), 202);
    const error = await refused(tenant, {
      ...TEXT_RUN,
      task_spec: { output_schema: "a summary", input_schema: { type: "json", json_schema: union } },
    });
    expect(error.details).toContainEqual({
      path: "task_spec.input_schema.json_schema.properties.v.anyOf",
      message: expect.stringContaining("input schemas"),
    });
  });

  it("refuses a standalone null type outside a union", async () => {
    const error = await refused(
      await createTenant(),
      jsonSpec({ type: "object", properties: { gone: { type: "null" } } }),
    );
    expect(error.details[0]?.path).toBe("task_spec.output_schema.json_schema.properties.gone.type");
  });

  it("refuses a json schema definition without json_schema", async () => {
    const error = await refused(await createTenant(), {
      ...TEXT_RUN,
      task_spec: { output_schema: { type: "json" } },
    });
    expect(error.details[0]?.path).toBe("task_spec.output_schema.json_schema");
  });

  it("refuses more than 200 source-policy domains and domains with schemes", async () => {
    const include_domains = Array.from({ length: 150 }, (_, i) => `site${i}.com`);
    const exclude_domains = [
      ...Array.from({ length: 50 }, (_, i) => `other${i}.org`),
      "https://bad.com/path",
    ];
    const error = await refused(await createTenant(), {
      ...TEXT_RUN,
      source_policy: { include_domains, exclude_domains, after_date: "2024-01-01" },
    });
    expect(error.details).toEqual([
      { path: "source_policy.exclude_domains.50", message: expect.stringContaining("not a plain domain") },
      { path: "source_policy", message: expect.stringContaining("201 domains") },
    ]);
  });

  it("accepts plain domains and bare extensions", async () => {
    const tenant = await createTenant();
    fakeParallel();
    await expectJson(
      await postJson(
        "/v1/runs",
        { ...TEXT_RUN, source_policy: { include_domains: ["example.com", ".gov", ".co.uk"] } },
        tenant.auth,
      ),
      202,
    );
  });

  it("refuses metadata keys over 16 and values over 512 characters, and the reserved key", async () => {
    const error = await refused(await createTenant(), {
      ...TEXT_RUN,
      metadata: { "a-very-long-key-name": "x", ok: "y".repeat(513), taskrelay_run_id: "run_x" },
    });
    expect(error.details.map((d) => d.path).sort()).toEqual([
      "metadata.a-very-long-key-name",
      "metadata.ok",
      "metadata.taskrelay_run_id",
    ]);
  });

  it("refuses callback URLs that are not https or point at private hosts", async () => {
    const tenant = await createTenant();
    const http = await refused(tenant, { ...TEXT_RUN, callback: { url: "http://example.com/hook" } });
    expect(http.details).toEqual([{ path: "callback.url", message: "the callback URL must use https" }]);
    const loopback = await refused(tenant, { ...TEXT_RUN, callback: { url: "https://127.0.0.1/hook" } });
    expect(loopback.details[0]?.message).toContain("loopback");
  });

  it("lists every problem of a request in one answer", async () => {
    const error = await refused(await createTenant(), {
      processor: "nope",
      input: "q",
      metadata: { "a-very-long-key-name": 1 },
      callback: { url: "http://x.com" },
      source_policy: { include_domains: ["https://x.com/"] },
    });
    expect(error.details).toHaveLength(4);
    expect(error.message).toMatch(/^The request has 4 problems: /);
  });
});

describe("one answer for the shape and the limits together", () => {
  it("reports a bad shape and Parallel's limits in the same 422", async () => {
    // Before: only `input` (zod); the processor and the key appeared one fix at a time.
    const error = await refused(await createTenant(), {
      processor: "turbo",
      input: "",
      metadata: { this_key_is_way_too_long: "v" },
    });
    expect(error.details).toEqual([
      { path: "input", message: "input must not be empty" },
      { path: "processor", message: expect.stringContaining('unknown processor "turbo"') },
      { path: "metadata.this_key_is_way_too_long", message: expect.stringContaining("16 characters") },
    ]);
    expect(error.message).toMatch(/^The request has 3 problems: input must not be empty; processor: /);
  });

  it("checks the callback URL and the task spec of a body whose other fields are the wrong type", async () => {
    const error = await refused(await createTenant(), {
      processor: "base",
      input: "q",
      enable_events: "yes",
      callback: { url: "http://example.com/hook" },
      task_spec: {
        output_schema: {
          type: "json",
          json_schema: { type: "object", properties: { a: { type: "strin" } } },
        },
      },
    });
    expect(error.details.map((d) => d.path)).toEqual([
      "enable_events",
      "task_spec.output_schema.json_schema.properties.a.type",
      "callback.url",
    ]);
  });
});

describe("type errors in the user's words", () => {
  it("names what was expected and what came", async () => {
    const tenant = await createTenant();
    const number = await refused(tenant, { processor: "base", input: 42 });
    expect(number.details).toEqual([
      { path: "input", message: "input must be a string or a JSON object, got a number" },
    ]);
    const missing = await refused(tenant, { processor: "base" });
    expect(missing.details).toEqual([
      { path: "input", message: "input is required: a string or a JSON object" },
    ]);
    const list = await refused(tenant, { processor: 7, input: [], enable_events: "yes" });
    expect(list.details).toEqual([
      { path: "processor", message: "processor must be a string, got a number" },
      { path: "input", message: "input must be a string or a JSON object, got an array" },
      { path: "enable_events", message: "enable_events must be true or false, got a string" },
    ]);
    expect(JSON.stringify(list)).not.toMatch(/Invalid input|received|expected \\w+,/);
  });

  it("names an unknown field by its path", async () => {
    const error = await refused(await createTenant(), { ...TEXT_RUN, procesor: "base" });
    expect(error.details).toEqual([{ path: "procesor", message: "procesor is not a field here" }]);
  });

  it("tells a bare JSON Schema as output_schema to wrap itself", async () => {
    const bare = { type: "object", properties: { gdp: { type: "string" } }, required: ["gdp"] };
    const error = await refused(await createTenant(), { ...TEXT_RUN, task_spec: { output_schema: bare } });
    expect(error.details).toContainEqual({
      path: "task_spec.output_schema",
      message: expect.stringContaining('wrap a JSON Schema as {"type": "json", "json_schema": <the schema>}'),
    });
    for (const detail of error.details) expect(detail.message).toContain('"json_schema"');
  });

  it('tells the string "auto" as output_schema that {"type":"auto"} is the auto schema', async () => {
    const tenant = await createTenant();
    const error = await refused(tenant, { ...TEXT_RUN, task_spec: { output_schema: "auto" } });
    expect(error.details).toEqual([
      {
        path: "task_spec.output_schema",
        message: expect.stringContaining('the auto schema is {"type": "auto"}'),
      },
    ]);
    fakeParallel();
    await expectJson(
      await postJson(
        "/v1/runs",
        { ...TEXT_RUN, task_spec: { output_schema: { type: "auto" } } },
        tenant.auth,
      ),
      202,
    );
  });

  it('refuses input_schema {"type": "auto"}: Parallel has no auto input schema', async () => {
    const error = await refused(await createTenant(), {
      ...TEXT_RUN,
      task_spec: { output_schema: "a summary", input_schema: { type: "auto" } },
    });
    expect(error.details).toEqual([
      { path: "task_spec.input_schema.type", message: expect.stringContaining("no auto input schema") },
    ]);
  });
});

describe("JSON Schemas are JSON Schemas", () => {
  it('refuses "type": "strin" and a string "required", each at its path', async () => {
    const error = await refused(
      await createTenant(),
      jsonSpec({
        type: "object",
        properties: { name: { type: "strin" }, tags: { type: "object", properties: {}, required: "name" } },
      }),
    );
    expect(error.details).toEqual([
      {
        path: "task_spec.output_schema.json_schema.properties.name.type",
        message: expect.stringContaining('is "strin", not a JSON Schema type'),
      },
      {
        path: "task_spec.output_schema.json_schema.properties.tags.required",
        message: expect.stringContaining("must be an array, got a string"),
      },
    ]);
  });

  it("checks an input schema as a JSON Schema too", async () => {
    const error = await refused(await createTenant(), {
      ...TEXT_RUN,
      task_spec: {
        output_schema: "a summary",
        input_schema: { type: "json", json_schema: { type: "object", properties: { $bad: { enum: 5 } } } },
      },
    });
    expect(error.details).toEqual([
      {
        path: "task_spec.input_schema.json_schema.properties.$bad.enum",
        message: expect.stringContaining("must be an array, got a number"),
      },
    ]);
  });
});

const COUNTRY_YEAR = {
  type: "json",
  json_schema: {
    type: "object",
    properties: { country: { type: "string" }, year: { type: "integer" } },
    required: ["country", "year"],
    additionalProperties: false,
  },
};

describe("a JSON input is checked against its input schema", () => {
  it("refuses a missing required field and a wrong type, each by its path, before anything is paid for", async () => {
    const error = await refused(await createTenant(), {
      processor: "base",
      input: { year: "2023", city: "Paris" },
      task_spec: { output_schema: "the GDP", input_schema: COUNTRY_YEAR },
    });
    expect(error.details).toEqual([
      { path: "input.country", message: "input.country is required by the input schema" },
      { path: "input.year", message: "input.year must be an integer, got a string" },
      { path: "input.city", message: "input.city is not allowed by the input schema" },
    ]);
  });

  it("accepts an input that matches", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    await expectJson(
      await postJson(
        "/v1/runs",
        {
          processor: "base",
          input: { country: "France", year: 2023 },
          task_spec: { output_schema: "the GDP", input_schema: COUNTRY_YEAR },
        },
        tenant.auth,
      ),
      202,
    );
    expect(parallel.creates()).toHaveLength(1);
  });

  it("checks every input of a schedule template the same way", async () => {
    const tenant = await createTenant();
    const response = await postJson(
      "/v1/schedules",
      {
        name: "GDP",
        cron: "0 9 * * 1",
        timezone: "UTC",
        template: {
          processor: "base",
          input: { country: "{{scheduled_date}}", year: "this year" },
          task_spec: { output_schema: "the GDP", input_schema: COUNTRY_YEAR },
        },
      },
      tenant.auth,
    );
    const body = await expectJson<Problems>(response, 422);
    expect(body.error.details).toEqual([
      { path: "template.input.year", message: "template.input.year must be an integer, got a string" },
    ]);
    const { n } = (await env.DB.prepare("SELECT COUNT(*) AS n FROM schedules WHERE api_key_id = ?")
      .bind(tenant.id)
      .first<{ n: number }>()) ?? { n: -1 };
    expect(n).toBe(0);
  });
});

describe("source_policy.after_date", () => {
  it("is passed on to Parallel, with a warning on the run wherever the run is shown", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const request = { ...TEXT_RUN, source_policy: { include_domains: [".gov"], after_date: "2024-01-01" } };
    const created = await expectJson<{ id: string; warnings: unknown }>(
      await postJson("/v1/runs", request, tenant.auth),
      202,
    );
    expect(parallel.creates()[0]?.body).toMatchObject({ source_policy: request.source_policy });
    const warning = {
      type: "warning",
      message: expect.stringContaining("Search API"),
      detail: { path: "source_policy.after_date", source: "taskrelay" },
    };
    expect(created.warnings).toEqual([warning]);
    const read = await expectJson<{ warnings: unknown }>(
      await api(`/v1/runs/${created.id}`, { headers: tenant.auth }),
      200,
    );
    expect(read.warnings).toEqual([warning]);
    const list = await expectJson<{ data: Array<{ id: string; warnings: unknown }> }>(
      await api("/v1/runs", { headers: tenant.auth }),
      200,
    );
    expect(list.data.find((run) => run.id === created.id)?.warnings).toEqual([warning]);
  });

  it("keeps taskrelay's warning beside Parallel's", async () => {
    const tenant = await createTenant();
    const parallelWarning = { type: "spec_validation_warning", message: "Field 'sources' looks like basis" };
    fakeParallel({
      create: () => HttpResponse.json(taskRun({ warnings: [parallelWarning] }), { status: 202 }),
    });
    const created = await expectJson<{ warnings: Array<{ type: string }> }>(
      await postJson("/v1/runs", { ...TEXT_RUN, source_policy: { after_date: "2024-01-01" } }, tenant.auth),
      202,
    );
    expect(created.warnings.map((w) => w.type)).toEqual(["warning", "spec_validation_warning"]);
  });
});

describe("lengths as Parallel counts them: code points", () => {
  const emoji = (n: number) => "\u{1F600}".repeat(n);

  // test/node/e2e/happy-path.test.ts shows the simulator drawing the same lines.
  it("accepts a metadata key of 16 emoji and refuses 17", async () => {
    const tenant = await createTenant();
    fakeParallel();
    const sixteen = { ...TEXT_RUN, metadata: { [emoji(16)]: emoji(512) } };
    expect(emoji(16).length).toBe(32); // UTF-16 units: what the relay used to count
    await expectJson(await postJson("/v1/runs", sixteen, tenant.auth), 202);

    const seventeen = { ...TEXT_RUN, metadata: { [emoji(17)]: "v" } };
    const error = await refused(tenant, seventeen);
    expect(error.details.map((d) => d.path)).toEqual([`metadata.${emoji(17)}`]);
  });

  it("counts a task spec's characters in code points", async () => {
    const tenant = await createTenant();
    fakeParallel();
    // 14,990 code points of JSON, 29,956 UTF-16 units.
    const spec = { task_spec: { output_schema: emoji(14_965) } };
    expect(JSON.stringify(spec.task_spec).length).toBeGreaterThan(15_000);
    const request = { processor: "base", input: "q", ...spec };
    await expectJson(await postJson("/v1/runs", request, tenant.auth), 202);
    const over = { processor: "base", input: "q", task_spec: { output_schema: emoji(14_990) } };
    await refused(tenant, over);
  });
});
