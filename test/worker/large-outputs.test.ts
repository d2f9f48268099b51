// Results of any size: an output over D1's 2 MB row limit (enforced here by d1-limits.ts, as on
// Cloudflare) is stored in R2, read back whole and streamed, and reaches the callback as a URL.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { runScheduledTick } from "../../src/cron/dispatcher";
import worker from "../../src/index";
import { INLINE_OUTPUT_MAX_BYTES } from "../../src/services/outputs";
import { signedIn } from "./dashboard-harness";
import { eventually, fakeReceiver, RECEIVER, storeFinishedRun } from "./delivery-harness";
import {
  api,
  createTenant,
  expectJson,
  fakeParallel,
  postJson,
  RELAY,
  resultReply,
  signWebhook,
  TEXT_RUN,
  type Tenant,
  webhookBody,
} from "./harness";

/** A JSON output of about `bytes` bytes, its size in one long field, with a basis for that field. */
function outputOfSize(bytes: number) {
  return {
    type: "json",
    content: {
      report: `${"Research findings, in full. ".repeat(Math.ceil(bytes / 28))}`.slice(0, bytes),
      pages: 42,
    },
    basis: [
      {
        field: "report",
        citations: [{ url: "https://example.org/report", title: "Report", excerpts: ["a passage"] }],
        reasoning: "Read in full.",
        confidence: "high",
      },
    ],
  };
}

async function completeWithOutput(tenant: Tenant, output: unknown, callback = false) {
  const parallel = fakeParallel({ result: (call) => resultReply(call.path.split("/")[4] ?? "", output) });
  const body = callback ? { ...TEXT_RUN, callback: { url: RECEIVER } } : TEXT_RUN;
  const run = await expectJson<{ id: string; parallel_run_id: string }>(
    await postJson("/v1/runs", body, tenant.auth),
    202,
  );
  await completionWebhook(run.parallel_run_id);
  return { run, parallel };
}

/** Parallel's webhook that the run completed, through the Worker, its background work awaited. */
async function completionWebhook(parallelRunId: string) {
  const webhook = webhookBody({ run_id: parallelRunId, status: "completed" });
  const execution = createExecutionContext();
  await worker.fetch(
    new Request(`${RELAY}/webhooks/parallel`, {
      method: "POST",
      headers: signWebhook(webhook),
      body: webhook,
    }),
    env,
    execution,
  );
  await waitOnExecutionContext(execution);
}

const resultCalls = (parallel: ReturnType<typeof fakeParallel>) =>
  parallel.calls.filter((c) => c.path.endsWith("/result")).length;

describe("results of any size", () => {
  it("stores a 3 MB output (over D1's 2 MB row limit) once, and GET /result returns it whole", async () => {
    const tenant = await createTenant();
    const output = outputOfSize(3_000_000);
    const { run, parallel } = await completeWithOutput(tenant, output);

    const response = await api(`/v1/runs/${run.id}/result`, { headers: tenant.auth });
    const result = await expectJson<{ run: { id: string; result_available: boolean }; output: unknown }>(
      response,
      200,
    );
    expect(result.output).toEqual(output);
    expect(result.run).toMatchObject({ id: run.id, result_available: true });
    // A later tick finds nothing to fetch again: the result was fetched once.
    const execution = createExecutionContext();
    await runScheduledTick(env, execution, new Date(Date.now() + 60_000));
    await waitOnExecutionContext(execution);
    expect(resultCalls(parallel)).toBe(1);

    const row = await env.DB.prepare("SELECT output, output_key, output_bytes FROM runs WHERE id = ?")
      .bind(run.id)
      .first<{ output: string | null; output_key: string | null; output_bytes: number }>();
    expect(row).toMatchObject({ output: null, output_bytes: JSON.stringify(output).length });
    const object = await env.OUTPUTS.head(row?.output_key ?? "");
    expect(object?.size).toBe(JSON.stringify(output).length);
  });

  it("keeps an output up to the threshold in D1, and one over it in R2", async () => {
    const tenant = await createTenant();
    const small = outputOfSize(INLINE_OUTPUT_MAX_BYTES - 1_000);
    const large = outputOfSize(INLINE_OUTPUT_MAX_BYTES + 1_000);
    const inline = await completeWithOutput(tenant, small);
    const external = await completeWithOutput(tenant, large);
    const stored = async (id: string) =>
      env.DB.prepare("SELECT output IS NOT NULL AS inline, output_key FROM runs WHERE id = ?")
        .bind(id)
        .first<{ inline: number; output_key: string | null }>();
    expect(await stored(inline.run.id)).toEqual({ inline: 1, output_key: null });
    expect(await stored(external.run.id)).toMatchObject({
      inline: 0,
      output_key: expect.stringContaining(external.run.id),
    });
    for (const [id, output] of [
      [inline.run.id, small],
      [external.run.id, large],
    ] as const) {
      const result = await expectJson<{ output: unknown }>(
        await api(`/v1/runs/${id}/result`, { headers: tenant.auth }),
        200,
      );
      expect(result.output).toEqual(output);
    }
  });

  it("streams a large result with its length, and sends the callback a URL and a size instead of the output", async () => {
    const tenant = await createTenant();
    const receiver = fakeReceiver();
    const output = outputOfSize(2_500_000);
    const { run } = await completeWithOutput(tenant, output, true);

    const call = await eventually(async () => {
      expect(receiver.calls).toHaveLength(1);
      return receiver.calls[0];
    });
    const verified = new Webhook(tenant.signingSecret).verify(call?.body ?? "", call?.headers ?? {}) as {
      data: { output: unknown; output_url: string; output_bytes: number; run: { id: string } };
    };
    expect(verified.data).toMatchObject({
      output: null,
      output_url: `${RELAY}/v1/runs/${run.id}/result`,
      output_bytes: JSON.stringify(output).length,
      run: { id: run.id },
    });
    expect(call?.body.length).toBeLessThan(10_000);

    // output_url answers with the key's credentials, and only with them.
    const path = new URL(verified.data.output_url).pathname;
    expect((await api(path, { headers: (await createTenant("other")).auth })).status).toBe(404);
    const response = await api(path, { headers: tenant.auth });
    expect(response.headers.get("content-type")).toContain("application/json");
    const text = await response.text();
    expect(Number(response.headers.get("content-length"))).toBe(new TextEncoder().encode(text).length);
    expect(JSON.parse(text).output).toEqual(output);
  });

  it("delivers a small output inline in the callback, as before", async () => {
    const tenant = await createTenant();
    const receiver = fakeReceiver();
    const output = outputOfSize(1_000);
    await completeWithOutput(tenant, output, true);
    const call = await eventually(async () => {
      expect(receiver.calls).toHaveLength(1);
      return receiver.calls[0];
    });
    const body = JSON.parse(call?.body ?? "{}") as { data: Record<string, unknown> };
    expect(body.data.output).toEqual(output);
    expect(body.data).not.toHaveProperty("output_url");
  });
});

describe("lists read only the columns they show", () => {
  it("lists runs without reading their outputs: a run whose stored output is unreadable still lists", async () => {
    const tenant = await createTenant();
    const run = await storeFinishedRun(tenant.id);
    // Not JSON: any list that reads and parses outputs fails on it.
    await env.DB.prepare("UPDATE runs SET output = '{not json' WHERE id = ?").bind(run.id).run();
    const page = await expectJson<{ data: Array<{ id: string; result_available: boolean }> }>(
      await api("/v1/runs?limit=100", { headers: tenant.auth }),
      200,
    );
    expect(page.data).toEqual([expect.objectContaining({ id: run.id, result_available: true })]);
  });
});

describe("the dashboard's run page", () => {
  it("shows the first part of a large output and a link that downloads all of it", async () => {
    const tenant = await createTenant();
    const output = outputOfSize(1_000_000);
    const { run } = await completeWithOutput(tenant, output);
    const b = await signedIn(tenant.key);
    const html = await b.page(`/dashboard/runs/${run.id}`);
    const size = JSON.stringify(output).length;
    expect(html).toContain(`${size.toLocaleString("en-US")} bytes of JSON`);
    expect(html).toContain(`href="/dashboard/runs/${run.id}/output"`);
    expect(html).toContain("Research findings, in full.");
    // The page holds only the first part.
    expect(html.length).toBeLessThan(200_000);

    const download = await b.get(`/dashboard/runs/${run.id}/output`);
    expect(download.status).toBe(200);
    expect(download.headers.get("content-disposition")).toContain("attachment");
    expect(JSON.parse(await download.text())).toEqual(output);
    // Another key's browser cannot download it.
    const other = await signedIn((await createTenant("other")).key);
    expect((await other.get(`/dashboard/runs/${run.id}/output`)).status).toBe(404);
  });
});

describe("schedules", () => {
  it("a scheduled run with an output in R2 records its success and is compared for notify: on_change", async () => {
    const tenant = await createTenant();
    const [a, b] = [outputOfSize(400_000), outputOfSize(500_000)];
    const outputs = [a, a, b];
    fakeParallel({ result: (call) => resultReply(call.path.split("/")[4] ?? "", outputs.shift()) });
    const schedule = await expectJson<{ id: string }>(
      await postJson(
        "/v1/schedules",
        {
          name: "big",
          cron: "0 9 * * *",
          timezone: "UTC",
          template: TEXT_RUN,
          notify: "on_change",
          overlap: "allow",
        },
        tenant.auth,
      ),
      201,
    );
    const changes: unknown[] = [];
    for (let i = 0; i < 3; i++) {
      const run = await expectJson<{ id: string; parallel_run_id: string }>(
        await postJson(`/v1/schedules/${schedule.id}/trigger`, {}, tenant.auth),
        202,
      );
      await completionWebhook(run.parallel_run_id);
      const view = await expectJson<{ output_changed: unknown }>(
        await api(`/v1/runs/${run.id}`, { headers: tenant.auth }),
        200,
      );
      changes.push(view.output_changed);
    }
    expect(changes).toEqual([true, false, true]);
    const after = await expectJson<{ last_success_at: string | null }>(
      await api(`/v1/schedules/${schedule.id}`, { headers: tenant.auth }),
      200,
    );
    expect(after.last_success_at).not.toBeNull();
  });
});
