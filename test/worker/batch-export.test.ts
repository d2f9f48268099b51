// GET /v1/batches/:id/results: one line per input in input order, JSONL or CSV, streamed; read back
// with a real CSV parser (csv-parse), paged over D1 across the page bound, R2 outputs streamed in.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { parse } from "csv-parse/browser/esm/sync";
import { describe, expect, it } from "vitest";
import worker from "../../src/index";
import { CSV_CUT_MARK } from "../../src/services/batch-export";
import { outputKey } from "../../src/services/outputs";
import { insertBatch, insertFinishedRuns } from "./batch-results-harness";
import { ADMIN, api, createTenant, expectJson, RELAY } from "./harness";

const SPEC = {
  output_schema: {
    type: "json",
    json_schema: {
      type: "object",
      properties: {
        company: { type: "string" },
        founded: { type: "integer" },
        hq: { type: "object", properties: { city: { type: "string" }, country: { type: "string" } } },
        tags: { type: "array", items: { type: "string" } },
        status: { type: "string" },
      },
    },
  },
};

const output = (content: Record<string, unknown>, urls: string[] = []) => ({
  type: "json",
  content,
  basis: [{ field: "company", reasoning: "r", citations: urls.map((url) => ({ url, title: null })) }],
});

async function finish(runId: string, status: string, columns: Record<string, unknown>) {
  const sets = Object.keys(columns).map((c) => `${c} = ?`);
  await env.DB.prepare(`UPDATE runs SET status = ?, ${sets.join(", ")} WHERE id = ?`)
    .bind(status, ...Object.values(columns), runId)
    .run();
}

async function exampleBatch() {
  const tenant = await createTenant();
  const batch = await insertBatch({
    apiKeyId: tenant.id,
    inputs: [
      { company: "Acme, Inc." },
      { company: 'The "Quoted" Co' },
      "plain text input",
      { company: "Big" },
      { company: "Later" },
    ],
    template: { processor: "lite", task_spec: SPEC },
  });
  const at = new Date().toISOString();
  const [a, b, c, d] = batch.runs;
  await finish(a?.id ?? "", "completed", {
    output: JSON.stringify(
      output(
        {
          company: "Acme, Inc.",
          founded: 1947,
          hq: { city: "Springfield", country: "US" },
          tags: ["a", "b"],
          status: "active",
        },
        ["https://acme.example/about", "https://news.example/acme", "https://acme.example/about"],
      ),
    ),
    output_bytes: 300,
    result_stored_at: at,
  });
  await finish(b?.id ?? "", "completed", {
    output: JSON.stringify(
      output({ company: 'The "Quoted" Co', founded: 2001, tags: [], status: '=HYPERLINK("x")' }),
    ),
    output_bytes: 200,
    result_stored_at: at,
  });
  await finish(c?.id ?? "", "failed", {
    error: JSON.stringify({ code: "parallel_failed", message: "Task execution failed,\nbadly" }),
  });
  // A large output, in R2 as the pipeline puts it.
  const big = output({ company: "Big", founded: 1999, tags: ["x".repeat(300_000)] }, [
    "https://big.example/1",
  ]);
  const bigJson = JSON.stringify(big);
  await env.OUTPUTS.put(outputKey(d?.id ?? ""), bigJson);
  await finish(d?.id ?? "", "completed", {
    output_key: outputKey(d?.id ?? ""),
    output_bytes: bigJson.length,
    result_stored_at: at,
  });
  return { tenant, batch, big };
}

describe("GET /v1/batches/:id/results", { timeout: 60_000 }, () => {
  it("JSONL: one line per input in input order, R2 outputs streamed in, citations once each", async () => {
    const { tenant, batch, big } = await exampleBatch();
    const response = await api(`/v1/batches/${batch.id}/results?format=jsonl`, { headers: tenant.auth });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/x-ndjson");
    expect(response.headers.get("content-disposition")).toContain(`${batch.id}.jsonl`);
    const lines = (await response.text())
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.index)).toEqual([0, 1, 2, 3, 4]);
    expect(lines.map((l) => l.run_id)).toEqual(batch.runs.map((r) => r.id));
    expect(lines[0]).toMatchObject({
      status: "completed",
      input: { company: "Acme, Inc." },
      output: { type: "json", content: { founded: 1947 } },
      citations: ["https://acme.example/about", "https://news.example/acme"],
      error: null,
    });
    expect(lines[2]).toMatchObject({
      status: "failed",
      input: "plain text input",
      output: null,
      error: { code: "parallel_failed" },
    });
    expect(lines[3].output).toEqual(big);
    expect(lines[3].citations).toEqual(["https://big.example/1"]);
    expect(lines[4]).toMatchObject({ status: "submitting", output: null, citations: [], error: null });
  });

  it("CSV: columns from the output schema, nested paths with '.', arrays as JSON, RFC 4180 quoting", async () => {
    const { tenant, batch } = await exampleBatch();
    const response = await api(`/v1/batches/${batch.id}/results?format=csv`, { headers: tenant.auth });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/csv; charset=utf-8");
    const bytes = new Uint8Array(await response.arrayBuffer());
    // A UTF-8 BOM first, so spreadsheets read the file as UTF-8.
    expect([...bytes.slice(0, 3)]).toEqual([0xef, 0xbb, 0xbf]);
    const text = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true }).decode(bytes);
    expect(text.split("\r\n").length).toBeGreaterThan(5);
    const rows = parse(text, { bom: true, columns: true, relax_column_count: false }) as Array<
      Record<string, string>
    >;
    expect(Object.keys(rows[0] ?? {})).toEqual([
      "index",
      "run_id",
      "status",
      "input",
      "company",
      "founded",
      "hq.city",
      "hq.country",
      "tags",
      "output.status",
      "citations",
      "error",
    ]);
    expect(rows).toHaveLength(5);
    expect(rows[0]).toMatchObject({
      index: "0",
      input: '{"company":"Acme, Inc."}',
      company: "Acme, Inc.",
      founded: "1947",
      "hq.city": "Springfield",
      tags: '["a","b"]',
      "output.status": "active",
      citations: "https://acme.example/about https://news.example/acme",
      error: "",
    });
    expect(rows[1]).toMatchObject({
      company: 'The "Quoted" Co',
      "hq.city": "",
      tags: "[]",
      "output.status": '\'=HYPERLINK("x")',
    });
    expect(rows[2]).toMatchObject({
      status: "failed",
      input: "plain text input",
      company: "",
      error: "Task execution failed,\nbadly",
    });
    expect(rows[3]).toMatchObject({ company: "Big", founded: "1999", citations: "https://big.example/1" });
    expect(rows[3]?.tags).toHaveLength(300_000 + 4);
    expect(rows[4]).toMatchObject({ status: "submitting", company: "" });
  });

  it("without a schema, the CSV's columns are the first page's fields; pages past 5,000 rows keep input order", async () => {
    const tenant = await createTenant();
    const batch = await insertBatch({ apiKeyId: tenant.id, inputs: [], template: { processor: "lite" } });
    await insertFinishedRuns(batch.id, tenant.id, 6_500);
    const response = await api(`/v1/batches/${batch.id}/results?format=csv`, { headers: tenant.auth });
    const rows = parse(await response.text(), { bom: true, columns: true }) as Array<Record<string, string>>;
    expect(rows).toHaveLength(6_500);
    expect(Object.keys(rows[0] ?? {})).toEqual([
      "index",
      "run_id",
      "status",
      "input",
      "company",
      "founded",
      "citations",
      "error",
    ]);
    const wrong = rows.findIndex((row, i) => row.index !== String(i) || row.company !== `Company ${i}`);
    expect(wrong, JSON.stringify(rows[wrong])).toBe(-1);
    expect(rows[6_499]?.citations).toBe("https://example.com/6499");
    const jsonl = await (await api(`/v1/batches/${batch.id}/results`, { headers: tenant.auth })).text();
    expect(jsonl.trimEnd().split("\n")).toHaveLength(6_500);
  });

  it("is the key's own: another key gets 404, the admin sees it; a bad format is a 422", async () => {
    const { tenant, batch } = await exampleBatch();
    const other = await createTenant("other");
    const refused = await expectJson<{ error: { code: string } }>(
      await api(`/v1/batches/${batch.id}/results`, { headers: other.auth }),
      404,
    );
    expect(refused.error.code).toBe("not_found");
    const admin = await api(`/v1/batches/${batch.id}/results?format=csv`, { headers: ADMIN });
    expect(admin.status).toBe(200);
    expect((await admin.text()).split("\r\n").filter(Boolean)).toHaveLength(6);
    const bad = await expectJson<{ error: { code: string } }>(
      await api(`/v1/batches/${batch.id}/results?format=xlsx`, { headers: tenant.auth }),
      422,
    );
    expect(bad.error.code).toBe("validation_failed");
    expect((await api(`/v1/batches/${batch.id}/results`)).status).toBe(401);
  });

  it("cut short by the call budget, ends with where to resume; ?after= gives the rest, nothing twice", async () => {
    const tenant = await createTenant();
    const batch = await insertBatch({ apiKeyId: tenant.id, inputs: [], template: { processor: "lite" } });
    await insertFinishedRuns(batch.id, tenant.id, 12_000);
    // A budget of 6 calls leaves the export 2 pages (4 are kept back): 10,000 of the 12,000 rows.
    const get = async (path: string) => {
      const ctx = createExecutionContext();
      const response = await worker.fetch(
        new Request(`${RELAY}${path}`, { headers: tenant.auth }),
        { ...env, SUBREQUEST_BUDGET: "6" },
        ctx,
      );
      const text = await response.text();
      await waitOnExecutionContext(ctx);
      expect(response.status).toBe(200);
      return text;
    };
    const first = (await get(`/v1/batches/${batch.id}/results`))
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(first).toHaveLength(10_001);
    const cut = first.at(-1);
    expect(cut).toEqual({
      cut: { after: 9_999, next: `/v1/batches/${batch.id}/results?format=jsonl&after=9999` },
    });
    const rest = (await get(cut.cut.next))
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    // The last part ends without a cut line: the file is complete.
    expect(rest.every((l) => typeof l.index === "number")).toBe(true);
    const indexes = [...first.slice(0, -1), ...rest].map((l) => l.index);
    expect(indexes).toEqual(Array.from({ length: 12_000 }, (_, i) => i));

    // CSV: the same, the cut as a last record whose first cell is #cut; each part has its header.
    const csv = parse(await get(`/v1/batches/${batch.id}/results?format=csv`), {
      bom: true,
      columns: true,
    }) as Array<Record<string, string>>;
    expect(csv).toHaveLength(10_001);
    const mark = csv.at(-1) ?? {};
    expect(Object.values(mark).slice(0, 3)).toEqual([
      CSV_CUT_MARK,
      "9999",
      `/v1/batches/${batch.id}/results?format=csv&after=9999`,
    ]);
    const csvRest = parse(await get(Object.values(mark)[2] ?? ""), { bom: true, columns: true }) as Array<
      Record<string, string>
    >;
    expect(csvRest.map((r) => r.index)).toEqual(Array.from({ length: 2_000 }, (_, i) => String(10_000 + i)));
    expect(csvRest.at(-1)?.company).toBe("Company 11999");
    // A bad cursor is a 422.
    const bad = await api(`/v1/batches/${batch.id}/results?after=-5`, { headers: tenant.auth });
    expect(bad.status).toBe(422);
  });

  it("is in the OpenAPI document", async () => {
    const doc = await expectJson<{ paths: Record<string, Record<string, unknown>> }>(
      await api("/openapi.json"),
      200,
    );
    expect(doc.paths["/v1/batches/{id}/results"]?.get).toBeDefined();
  });
});
