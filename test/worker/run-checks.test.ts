import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createTenant, expectJson, fakeParallel, postJson, TEXT_RUN, type Tenant } from "./harness";

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

  it("refuses more than 200 source-policy domains, domains with schemes, and after_date", async () => {
    const include_domains = Array.from({ length: 150 }, (_, i) => `site${i}.com`);
    const exclude_domains = [
      ...Array.from({ length: 50 }, (_, i) => `other${i}.org`),
      "https://bad.com/path",
    ];
    const error = await refused(await createTenant(), {
      ...TEXT_RUN,
      source_policy: { include_domains, exclude_domains, after_date: "2024-01-01" },
    });
    expect(error.details).toEqual(
      expect.arrayContaining([
        { path: "source_policy", message: expect.stringContaining("201 domains") },
        { path: "source_policy.exclude_domains.50", message: expect.stringContaining("not a plain domain") },
        { path: "source_policy.after_date", message: expect.stringContaining("Search API") },
      ]),
    );
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
      source_policy: { after_date: "2024-01-01" },
    });
    expect(error.details).toHaveLength(4);
    expect(error.message).toMatch(/^The request has 4 problems: /);
  });
});
