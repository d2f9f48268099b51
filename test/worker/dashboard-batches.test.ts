// The dashboard's batches page: the key's batches with progress, counts by status, an ETA, the
// downloads and the cancel form; the batch's runs in the runs list with their batch.
import { env } from "cloudflare:workers";
import { parse } from "csv-parse/browser/esm/sync";
import { describe, expect, it } from "vitest";
import { insertBatch } from "./batch-results-harness";
import { attributeValues, signedIn } from "./dashboard-harness";
import { ADMIN, createTenant } from "./harness";

const ADMIN_TOKEN = ADMIN.authorization.replace("Bearer ", "");

async function halfDoneBatch(apiKeyId: string) {
  const created = new Date(Date.now() - 10 * 60_000);
  const batch = await insertBatch({
    apiKeyId,
    name: "Enrich <accounts> & co",
    inputs: [{ company: "A" }, { company: "B" }, { company: "C" }, { company: "D" }],
    at: created,
  });
  const [a, b, c] = batch.runs;
  const at = new Date().toISOString();
  await env.DB.prepare(
    "UPDATE runs SET status = 'completed', result_stored_at = ?, output = ? WHERE id IN (?, ?)",
  )
    .bind(at, JSON.stringify({ type: "json", content: { founded: 1 }, basis: [] }), a?.id, b?.id)
    .run();
  await env.DB.prepare("UPDATE runs SET status = 'running' WHERE id = ?").bind(c?.id).run();
  return batch;
}

describe("dashboard batches", { timeout: 60_000 }, () => {
  it("shows progress, counts by status, an ETA, the downloads and the cancel form; only the key's own", async () => {
    const tenant = await createTenant();
    const other = await createTenant("other");
    const batch = await halfDoneBatch(tenant.id);
    const theirs = await halfDoneBatch(other.id);
    const b = await signedIn(tenant.key);
    const html = await b.page("/dashboard/batches");
    expect(attributeValues(html, "data-batch-id")).toEqual([batch.id]);
    expect(html).toContain('aria-current="page">Batches</a>');
    expect(html).toContain("Enrich &lt;accounts&gt; &amp; co");
    expect(html).toMatch(/<progress max="4" value="2"/);
    expect(html).toContain("2 of 4 finished (50%)");
    expect(html).toMatch(/data-count="completed">.*?2<\/li>/s);
    expect(html).toMatch(/data-count="running">.*?1<\/li>/s);
    expect(html).toMatch(/data-count="submitting">.*?1<\/li>/s);
    expect(html).toContain("data-eta");
    expect(html).toContain(`href="/dashboard/batches/${batch.id}/results.csv"`);
    expect(html).toContain(`action="/dashboard/batches/${batch.id}/cancel"`);
    expect(html).not.toContain(theirs.id);

    const csv = await b.get(`/dashboard/batches/${batch.id}/results.csv`);
    expect(csv.status).toBe(200);
    const rows = parse(await csv.text(), { bom: true, columns: true }) as Array<Record<string, string>>;
    expect(rows.map((r) => r.status)).toEqual(["completed", "completed", "running", "submitting"]);
    expect((await b.get(`/dashboard/batches/${theirs.id}/results.jsonl`)).status).toBe(404);

    const admin = await signedIn(ADMIN_TOKEN);
    const all = await admin.page("/dashboard/batches");
    expect(attributeValues(all, "data-batch-id")).toEqual(expect.arrayContaining([batch.id, theirs.id]));
  });

  it("lists a batch's runs in the runs list with their batch", async () => {
    const tenant = await createTenant();
    const batch = await halfDoneBatch(tenant.id);
    const b = await signedIn(tenant.key);
    const html = await b.page("/dashboard/runs");
    expect(html).toContain(`href="/dashboard/batches#${batch.id}"`);
    expect(html).toContain("#3</a>");
  });
});
