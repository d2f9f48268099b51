// Results of any size: an output over D1's 2 MB row limit (enforced here by d1-limits.ts, as on
// Cloudflare) is stored in R2, read back whole and streamed, and reaches the callback as a URL.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { runScheduledTick } from "../../src/cron/dispatcher";
import { RESULT_MAX_ATTEMPTS } from "../../src/services/completion";
import { INLINE_OUTPUT_MAX_BYTES, OUTPUT_PART_BYTES, outputKey } from "../../src/services/outputs";
import { signedIn } from "./dashboard-harness";
import { eventually, fakeReceiver, RECEIVER, storeFinishedRun } from "./delivery-harness";
import {
  api,
  completionWebhook,
  createTenant,
  emptyBackgroundWork,
  expectJson,
  fakeParallel,
  postJson,
  RELAY,
  resultReply,
  TEXT_RUN,
  type Tenant,
  taskRun,
} from "./harness";
import { capturingQueue, clockFrom, consume, tickAndWork } from "./queue-harness";

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
  return completeWithReply(tenant, (id) => resultReply(id, output), { callback });
}

async function completeWithReply(
  tenant: Tenant,
  reply: (parallelRunId: string) => Response,
  options: { callback?: boolean; background?: "awaited" | "left_running" } = {},
) {
  const parallel = fakeParallel({ result: (call) => reply(call.path.split("/")[4] ?? "") });
  const body = options.callback ? { ...TEXT_RUN, callback: { url: RECEIVER } } : TEXT_RUN;
  const run = await expectJson<{ id: string; parallel_run_id: string }>(
    await postJson("/v1/runs", body, tenant.auth),
    202,
  );
  await completionWebhook(run.parallel_run_id, { background: options.background });
  return { run, parallel };
}

const encoder = new TextEncoder();

/**
 * A /result body sent as a stream in chunks of `chunkBytes`, without a Content-Length (as a chunked
 * or compressed reply arrives). With `cutAt`, the body stops there: `error` breaks it off (the
 * connection lost), `stall` sends nothing more until `release` (an invocation that dies waiting).
 */
function streamedBody(
  text: string,
  options: { chunkBytes?: number; cutAt?: number; cut?: "error" | "stall" } = {},
) {
  const bytes = encoder.encode(text);
  const chunkBytes = options.chunkBytes ?? 65_521;
  const end = options.cutAt ?? bytes.length;
  let at = 0;
  let release: () => void = () => undefined;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= end && options.cutAt !== undefined) {
        if (options.cut === "error") return controller.error(new Error("connection lost"));
        return new Promise<void>((resolve) => {
          release = () => {
            controller.error(new Error("released"));
            resolve();
          };
        });
      }
      if (at >= end) return controller.close();
      controller.enqueue(bytes.slice(at, Math.min(at + chunkBytes, end)));
      at += chunkBytes;
    },
  });
  return {
    response: new Response(body, { headers: { "content-type": "application/json" } }),
    release: () => release(),
  };
}

const resultJson = (parallelRunId: string, output: unknown, run: Record<string, unknown> = {}) =>
  JSON.stringify({
    run: taskRun({ run_id: parallelRunId, status: "completed", is_active: false, ...run }),
    output,
  });

const storedRow = (id: string) =>
  env.DB.prepare(
    "SELECT status, output IS NOT NULL AS inline, output_key, output_bytes, attempts, next_sweep_at, error FROM runs WHERE id = ?",
  )
    .bind(id)
    .first<{
      status: string;
      inline: number;
      output_key: string | null;
      output_bytes: number | null;
      attempts: number;
      next_sweep_at: string | null;
      error: string | null;
    }>();

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

describe("reading /result as it arrives", () => {
  it("streams a body with no Content-Length into R2, and serves it back byte for byte", async () => {
    const tenant = await createTenant();
    // Its length unknown, the output is sent in parts of the largest size: this one fits in one, one put.
    const output = { ...outputOfSize(OUTPUT_PART_BYTES + 1_500_000), type: "json" };
    const { run } = await completeWithReply(tenant, (id) => streamedBody(resultJson(id, output)).response);
    const row = await storedRow(run.id);
    const json = JSON.stringify(output);
    expect(row).toMatchObject({ status: "completed", inline: 0, output_bytes: json.length });
    const object = await env.OUTPUTS.head(row?.output_key ?? "");
    expect(object?.size).toBe(json.length);
    // A multipart object's ETag ends with its number of parts: one put has none
    // (large-outputs-limits.test.ts has the multipart upload).
    expect(object?.etag).not.toMatch(/-\d+$/);
    const response = await api(`/v1/runs/${run.id}/result`, { headers: tenant.auth });
    expect(response.status).toBe(200);
    const text = await response.text();
    // The output as Parallel sent it, byte for byte, inside the result.
    expect(text.slice(text.indexOf(',"output":') + 10, -1)).toBe(json);
    const timeline = await expectJson<{ events: Array<{ kind: string; detail: Record<string, unknown> }> }>(
      await api(`/v1/runs/${run.id}/timeline`, { headers: tenant.auth }),
      200,
    );
    expect(timeline.events.find((e) => e.kind === "result_fetched")?.detail).toEqual({
      output_type: "json",
      output_bytes: json.length,
      stored_in: "r2",
    });
  }, 60_000);

  it("keeps a small output inline although its body is large (a large run object), and its warnings", async () => {
    const tenant = await createTenant();
    const output = outputOfSize(10_000);
    const warnings = [{ type: "input_warning", message: "w".repeat(200_000) }];
    const { run } = await completeWithReply(
      tenant,
      (id) => streamedBody(resultJson(id, output, { warnings }), { chunkBytes: 7_001 }).response,
    );
    expect(await storedRow(run.id)).toMatchObject({ inline: 1, output_key: null });
    const view = await expectJson<{ warnings: unknown[] | null }>(
      await api(`/v1/runs/${run.id}`, { headers: tenant.auth }),
      200,
    );
    expect(view.warnings).toEqual(warnings);
    const result = await expectJson<{ output: unknown }>(
      await api(`/v1/runs/${run.id}/result`, { headers: tenant.auth }),
      200,
    );
    expect(result.output).toEqual(output);
  });

  it("counts a body broken off mid-download as one failed attempt: nothing stored, fetched again later", async () => {
    await emptyBackgroundWork();
    const tenant = await createTenant();
    const output = outputOfSize(OUTPUT_PART_BYTES + 3_000_000);
    let broken = true;
    const { run, parallel } = await completeWithReply(tenant, (id) => {
      const text = resultJson(id, output);
      // Broken 11 MB in (its length unknown: held for one 32 MiB part, nothing sent to R2 yet; the
      // abort of a multipart upload begun is in large-outputs-limits.test.ts).
      return streamedBody(text, broken ? { cutAt: OUTPUT_PART_BYTES + 1_000_000, cut: "error" } : {})
        .response;
    });
    const row = await storedRow(run.id);
    expect(row).toMatchObject({ status: "completed", attempts: 1, output_key: null });
    expect(await env.OUTPUTS.head(outputKey(run.id))).toBeNull();
    const timeline = await expectJson<{ events: Array<{ kind: string; detail: Record<string, unknown> }> }>(
      await api(`/v1/runs/${run.id}/timeline`, { headers: tenant.auth }),
      200,
    );
    expect(timeline.events.find((e) => e.kind === "result_fetch_retry_scheduled")?.detail).toMatchObject({
      attempt: 1,
      parallel_status: 200,
      message: expect.stringContaining("Reading the result failed"),
    });

    broken = false;
    expect((await tickAndWork(new Date(Date.now() + 5 * 60_000))).summaries).toMatchObject({
      fetch_results: { claimed: 1, stored: 1 },
    });
    expect(await storedRow(run.id)).toMatchObject({
      attempts: 2,
      output_bytes: JSON.stringify(output).length,
    });
    expect(parallel.calls.filter((c) => c.path.endsWith("/result"))).toHaveLength(2);
  }, 60_000);

  it("counts an attempt when the fetch is claimed: a run whose download never finishes gives up after the ceiling", async () => {
    await emptyBackgroundWork();
    const tenant = await createTenant();
    const releases: Array<() => void> = [];
    // Every /result sends the start of a large output, then nothing: the invocation downloading it
    // never finishes (on Cloudflare: killed out of memory or time), so no failure path ever runs.
    const { run, parallel } = await completeWithReply(
      tenant,
      (id) => {
        const text = resultJson(id, outputOfSize(5_000_000));
        const body = streamedBody(text, { cutAt: 400_000, cut: "stall" });
        releases.push(body.release);
        return body.response;
      },
      { background: "left_running" },
    );
    const resultCalls = () => parallel.calls.filter((c) => c.path.endsWith("/result")).length;
    await eventually(async () => expect(resultCalls()).toBe(1));

    // The webhook's fetch is stuck mid-download; its attempt is already counted and the next is due later.
    const first = await storedRow(run.id);
    expect(first).toMatchObject({ status: "completed", attempts: 1 });
    expect(Date.parse(first?.next_sweep_at ?? "")).toBeGreaterThan(Date.now());

    // Each tick finds the run due again (its lease and backoff past), claims it (one more attempt)
    // and starts a download that never finishes either.
    const working: Array<Promise<unknown>> = [];
    let at = Date.now();
    for (let tick = 1; tick <= RESULT_MAX_ATTEMPTS; tick++) {
      at += 40 * 60_000;
      const captured = capturingQueue();
      const tickCtx = createExecutionContext();
      await runScheduledTick(env, tickCtx, new Date(at), { queue: captured.queue });
      await waitOnExecutionContext(tickCtx);
      const messages = captured.take().map((m) => m.body);
      expect(
        messages.filter((m) => m.kind === "fetch_results"),
        `tick ${tick}`,
      ).toHaveLength(1);
      const consumed = consume(messages, { now: clockFrom(new Date(at)), queue: captured.queue });
      working.push(consumed);
      if (tick < RESULT_MAX_ATTEMPTS) {
        await eventually(async () => expect(resultCalls()).toBe(tick + 1));
        expect(await storedRow(run.id)).toMatchObject({ status: "completed", attempts: tick + 1 });
      } else {
        // Past the ceiling: given up at the claim, without downloading again.
        await consumed;
      }
    }
    const failed = await storedRow(run.id);
    expect(failed?.status).toBe("failed");
    expect(JSON.parse(failed?.error ?? "{}")).toMatchObject({ code: "result_unavailable" });
    expect(resultCalls()).toBe(RESULT_MAX_ATTEMPTS);
    const view = await expectJson<{ status: string; error: { code: string } }>(
      await api(`/v1/runs/${run.id}`, { headers: tenant.auth }),
      200,
    );
    expect(view).toMatchObject({ status: "failed", error: { code: "result_unavailable" } });

    // The stuck downloads end at last: their late failures change nothing.
    for (const release of releases) release();
    await Promise.allSettled(working);
    expect((await storedRow(run.id))?.status).toBe("failed");
    expect((await tickAndWork(new Date(at + 60 * 60_000))).summaries).toMatchObject({
      fetch_results: { claimed: 0 },
    });
  }, 60_000);
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
