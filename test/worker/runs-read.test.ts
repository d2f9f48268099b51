import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import {
  api,
  createTenant,
  expectJson,
  fakeParallel,
  JSON_OUTPUT,
  postJson,
  TEXT_RUN,
  type Tenant,
} from "./harness";

async function newRun(tenant: Tenant, body: Record<string, unknown> = TEXT_RUN) {
  return expectJson<{ id: string; status: string }>(await postJson("/v1/runs", body, tenant.auth), 202);
}

/** Stands in for the completion pipeline: the run completed and its result is stored. */
async function storeResult(runId: string, at = new Date().toISOString()) {
  await env.DB.prepare(
    "UPDATE runs SET status = 'completed', finished_at = ?, result_stored_at = ?, output = ?, next_sweep_at = NULL WHERE id = ?",
  )
    .bind(at, at, JSON.stringify(JSON_OUTPUT), runId)
    .run();
}

describe("reading runs", () => {
  it("shows the input as stored, with MCP header values redacted", async () => {
    const tenant = await createTenant();
    fakeParallel();
    const mcp = [
      { name: "crm", url: "https://mcp.example.com", headers: { authorization: "Bearer s3cret-token" } },
    ];
    const run = await newRun(tenant, {
      ...TEXT_RUN,
      input: { country: "France", year: 2023 },
      mcp_servers: mcp,
      callback: { url: "https://example.com/hook" },
    });
    const response = await api(`/v1/runs/${run.id}/input`, { headers: tenant.auth });
    const text = await response.clone().text();
    const input = await expectJson(response, 200);
    expect(input).toMatchObject({
      processor: "base",
      input: { country: "France", year: 2023 },
      mcp_servers: [{ name: "crm", headers: { authorization: "[redacted]" } }],
      callback: { url: "https://example.com/hook" },
    });
    expect(text).not.toContain("s3cret-token");
    expect(
      JSON.stringify(await expectJson(await api(`/v1/runs/${run.id}`, { headers: tenant.auth }), 200)),
    ).not.toContain("s3cret-token");
  });

  it("answers 409 result_not_ready before the result is stored, then 200 with run and output", async () => {
    const tenant = await createTenant();
    fakeParallel();
    const run = await newRun(tenant);
    const early = await expectJson<{ error: { code: string; details: Array<{ status: string }> } }>(
      await api(`/v1/runs/${run.id}/result`, { headers: tenant.auth }),
      409,
    );
    expect(early.error.code).toBe("result_not_ready");
    expect(early.error.details[0]?.status).toBe("queued");
    await storeResult(run.id);
    const result = await expectJson<{ run: { id: string; status: string }; output: unknown }>(
      await api(`/v1/runs/${run.id}/result`, { headers: tenant.auth }),
      200,
    );
    expect(result.run).toMatchObject({ id: run.id, status: "completed" });
    expect(result.output).toEqual(JSON_OUTPUT);
  });

  it("waits for the result with ?wait=N by re-reading D1", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const run = await newRun(tenant);
    const started = Date.now();
    setTimeout(() => void storeResult(run.id), 600);
    const result = await expectJson<{ output: unknown }>(
      await api(`/v1/runs/${run.id}/result?wait=5`, { headers: tenant.auth }),
      200,
    );
    expect(result.output).toEqual(JSON_OUTPUT);
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);
    // Waiting never holds Parallel's blocking call.
    expect(parallel.calls.filter((c) => c.path.endsWith("/result"))).toHaveLength(0);
  });

  it("gives up waiting after N seconds with 409", async () => {
    const tenant = await createTenant();
    fakeParallel();
    const run = await newRun(tenant);
    const started = Date.now();
    await expectJson(await api(`/v1/runs/${run.id}/result?wait=1`, { headers: tenant.auth }), 409);
    expect(Date.now() - started).toBeGreaterThanOrEqual(750);
  });

  it("refuses a wait over 60 seconds", async () => {
    const tenant = await createTenant();
    fakeParallel();
    const run = await newRun(tenant);
    const error = await expectJson<{ error: { details: Array<{ path: string }> } }>(
      await api(`/v1/runs/${run.id}/result?wait=61`, { headers: tenant.auth }),
      422,
    );
    expect(error.error.details[0]?.path).toBe("wait");
  });

  it("lists runs newest first, page by page, with an opaque cursor", async () => {
    const tenant = await createTenant();
    fakeParallel();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push((await newRun(tenant)).id);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor ? `?limit=2&cursor=${cursor}` : "?limit=2";
      const page: { data: Array<{ id: string }>; next_cursor: string | null } = await expectJson(
        await api(`/v1/runs${query}`, { headers: tenant.auth }),
        200,
      );
      expect(page.data.length).toBeLessThanOrEqual(2);
      seen.push(...page.data.map((r) => r.id));
      cursor = page.next_cursor;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());
  });

  it("filters the list by status", async () => {
    const tenant = await createTenant();
    fakeParallel();
    const [a, b] = [await newRun(tenant), await newRun(tenant)];
    await storeResult(b.id);
    const completed = await expectJson<{ data: Array<{ id: string }> }>(
      await api("/v1/runs?status=completed", { headers: tenant.auth }),
      200,
    );
    expect(completed.data.map((r) => r.id)).toEqual([b.id]);
    const queued = await expectJson<{ data: Array<{ id: string }> }>(
      await api("/v1/runs?status=queued", { headers: tenant.auth }),
      200,
    );
    expect(queued.data.map((r) => r.id)).toEqual([a.id]);
  });

  it("refuses a cursor it did not issue and an unknown status", async () => {
    const tenant = await createTenant();
    await expectJson(await api("/v1/runs?cursor=garbage!", { headers: tenant.auth }), 422);
    await expectJson(await api("/v1/runs?status=done", { headers: tenant.auth }), 422);
  });

  it("shows the timeline of a run", async () => {
    const tenant = await createTenant();
    fakeParallel();
    const run = await newRun(tenant);
    const timeline = await expectJson<{
      run_id: string;
      events: Array<{ kind: string; at: string; detail: unknown }>;
    }>(await api(`/v1/runs/${run.id}/timeline`, { headers: tenant.auth }), 200);
    expect(timeline.run_id).toBe(run.id);
    expect(timeline.events.map((e) => e.kind)).toEqual(["stored", "submitted"]);
    expect(timeline.events[1]?.detail).toMatchObject({
      parallel_run_id: expect.stringMatching(/^trun_/),
      attempt: 1,
    });
  });
});
