// A batch's results in bulk: the batch_results job reads the Task Group's runs stream (the simulator,
// in-process, through the official SDK) and stores every output, with no per-run /result; resumes
// after results_event_id; completes the batch once and sends batch.completed, signed.

import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { beforeEach, describe, expect, it } from "vitest";
import { completeBatch } from "../../src/services/batch-completion";
import { createServiceContext } from "../../src/services/context";
import { insertBatch, simulatorAtParallel, submitToGroup, type TestBatch } from "./batch-results-harness";
import { fakeReceiver, RECEIVER } from "./delivery-harness";
import { completionWebhook, createTenant, emptyBackgroundWork } from "./harness";
import { consume, tickAndWork } from "./queue-harness";

const SPEC = {
  output_schema: {
    type: "json",
    json_schema: {
      type: "object",
      properties: { company: { type: "string" }, founded: { type: "integer" } },
      required: ["company", "founded"],
      additionalProperties: false,
    },
  },
};

const inputsOf = (n: number) => Array.from({ length: n }, (_, i) => ({ company: `Company ${i}` }));

async function runsOf(batch: TestBatch) {
  const { results } = await env.DB.prepare(
    "SELECT id, status, output, result_stored_at, next_sweep_at, batch_index FROM runs WHERE batch_id = ? ORDER BY batch_index",
  )
    .bind(batch.id)
    .all<{ id: string; status: string; output: string | null; result_stored_at: string | null }>();
  return results;
}

async function batchRow(id: string) {
  return env.DB.prepare("SELECT * FROM batches WHERE id = ?").bind(id).first<Record<string, unknown>>();
}

/** Ticks (with the consumer) and works every follow-up message, until nothing is left to do. */
async function tickUntilQuiet(at: Date, ticks = 6) {
  const summaries = [];
  for (let i = 0; i < ticks; i++) {
    const tick = await tickAndWork(new Date(at.getTime() + i * 60_000));
    summaries.push(tick.summaries);
    let later = tick.later.filter((m) => m.body.kind === "batch_results").map((m) => m.body);
    while (later.length > 0) {
      const { report } = await consume(later);
      summaries.push(report);
      later = [];
    }
  }
  return summaries;
}

describe("a batch's results in bulk", { timeout: 60_000 }, () => {
  beforeEach(emptyBackgroundWork);

  it("stores N finished runs' outputs with a handful of stream calls and no /result, then completes once", async () => {
    const tenant = await createTenant();
    const receiver = fakeReceiver();
    const { sim, calls, client } = simulatorAtParallel({ time_scale: 1 });
    const batch = await insertBatch({
      apiKeyId: tenant.id,
      inputs: inputsOf(250),
      template: { processor: "lite", task_spec: SPEC },
      callbackUrl: RECEIVER,
    });
    const group = await submitToGroup(client, batch);
    for (const run of sim.control.runs()) sim.control.finishRun(run.run.run_id);
    calls.length = 0;

    await tickUntilQuiet(new Date(), 3);

    const runs = await runsOf(batch);
    expect(runs.every((r) => r.status === "completed" && r.result_stored_at)).toBe(true);
    // Each output is what Parallel's /result would have given.
    const [first] = runs;
    const expected = await (
      await sim.app.fetch(
        new Request(
          `http://sim/v1/tasks/runs/${sim.control.runs({ limit: 250 }).at(-1)?.run.run_id}/result`,
          {
            headers: { "x-api-key": "test-parallel-key" },
          },
        ),
      )
    ).json();
    expect(JSON.parse(first?.output ?? "null")).toMatchObject({
      type: "json",
      content: { company: expect.any(String) },
    });
    expect(expected).toHaveProperty("output.type", "json");

    const streamCalls = calls.filter((c) => c.path === `/v1/tasks/groups/${group}/runs`);
    const resultCalls = calls.filter((c) => c.path.endsWith("/result"));
    expect(resultCalls).toEqual([]);
    expect(streamCalls.length).toBeGreaterThanOrEqual(1);
    expect(streamCalls.length).toBeLessThanOrEqual(3);

    const row = await batchRow(batch.id);
    expect(row?.status).toBe("completed");
    expect(row?.completed_at).toBeTruthy();
    expect(row?.results_sweep_at).toBeNull();

    // batch.completed: once, signed with the key's secret, counts and the results URL.
    const completed = receiver.calls.filter((c) => JSON.parse(c.body).type === "batch.completed");
    expect(completed).toHaveLength(1);
    const call = completed[0];
    if (!call) throw new Error("no batch.completed");
    new Webhook(tenant.signingSecret).verify(call.body, call.headers);
    const body = JSON.parse(call.body);
    expect(body.data.batch).toMatchObject({
      id: batch.id,
      status: "completed",
      counts: { total: 250, completed: 250 },
    });
    expect(body.data.results_url.csv).toBe(`https://relay.test/v1/batches/${batch.id}/results?format=csv`);
  });

  it("takes webhook-reported completions in bulk too, resumes after last_event_id, and sends per-run callbacks", async () => {
    const tenant = await createTenant();
    const receiver = fakeReceiver();
    const { sim, calls, client } = simulatorAtParallel({ time_scale: 1 });
    const batch = await insertBatch({
      apiKeyId: tenant.id,
      inputs: inputsOf(30),
      template: { processor: "lite", task_spec: SPEC },
      callbackUrl: RECEIVER,
      perRun: true,
    });
    const group = await submitToGroup(client, batch);
    const simRuns = sim.control.runs().sort((a, b) => a.seq - b.seq);
    // The first 10 finish, and Parallel's webhook tells the relay of 5 of them.
    for (const run of simRuns.slice(0, 10)) sim.control.finishRun(run.run.run_id);
    for (const run of simRuns.slice(0, 5)) await completionWebhook(run.run.run_id);
    calls.length = 0;
    await tickUntilQuiet(new Date(), 2);
    let runs = await runsOf(batch);
    expect(runs.slice(0, 10).every((r) => r.result_stored_at)).toBe(true);
    expect(runs.slice(10).every((r) => r.status === "queued")).toBe(true);
    expect(calls.filter((c) => c.path.endsWith("/result"))).toEqual([]);
    expect((await batchRow(batch.id))?.results_event_id).toBe("10");

    // The rest finish; the next pass reads from the 11th run on.
    for (const run of simRuns.slice(10))
      sim.control.finishRun(run.run.run_id, run.seq % 7 === 0 ? "failed" : "completed");
    calls.length = 0;
    await tickUntilQuiet(new Date(Date.now() + 10 * 60_000), 3);
    runs = await runsOf(batch);
    expect(runs.every((r) => r.status === "failed" || r.result_stored_at)).toBe(true);
    expect(calls.filter((c) => c.path.endsWith("/result"))).toEqual([]);
    const streamCalls = calls.filter((c) => c.path === `/v1/tasks/groups/${group}/runs`);
    expect(streamCalls.length).toBeGreaterThanOrEqual(1);
    expect(streamCalls[0]?.search).toContain("last_event_id=10");

    // Every run's own callback (per_run), and the batch's, each once.
    const events = receiver.calls.map(
      (c) => JSON.parse(c.body) as { type: string; data: { run?: { id: string } } },
    );
    const perRun = events.filter((e) => e.type.startsWith("run."));
    expect(new Set(perRun.map((e) => e.data.run?.id)).size).toBe(30);
    expect(perRun).toHaveLength(30);
    expect(events.filter((e) => e.type === "batch.completed")).toHaveLength(1);
  });

  it("continues a pass out of budget in a follow-up message, under the same lease", {
    timeout: 60_000,
  }, async () => {
    const tenant = await createTenant();
    const { sim, calls, client } = simulatorAtParallel({ time_scale: 1 });
    const batch = await insertBatch({
      apiKeyId: tenant.id,
      inputs: inputsOf(1_200),
      template: { processor: "lite", task_spec: SPEC },
    });
    const group = await submitToGroup(client, batch);
    for (const run of sim.control.runs({ limit: 2_000 })) sim.control.finishRun(run.run.run_id);
    calls.length = 0;
    const tick = await tickAndWork(new Date());
    expect(tick.summaries.batch_results).toMatchObject({ claimed: 1 });
    const later = tick.later.filter((m) => m.body.kind === "batch_results");
    expect(later).toHaveLength(1);
    const stored = (await runsOf(batch)).filter((r) => r.result_stored_at).length;
    expect(stored).toBeGreaterThan(0);
    expect(stored).toBeLessThan(1_200);
    await consume(later.map((m) => m.body));
    const runs = await runsOf(batch);
    expect(runs.every((r) => r.result_stored_at)).toBe(true);
    expect((await batchRow(batch.id))?.completed_at).toBeTruthy();
    expect(calls.filter((c) => c.path === `/v1/tasks/groups/${group}/runs`)).toHaveLength(2);
    expect(calls.filter((c) => c.path.endsWith("/result"))).toEqual([]);
  });

  it("completes a batch exactly once when two workers notice at the same moment", async () => {
    const tenant = await createTenant();
    const receiver = fakeReceiver();
    const batch = await insertBatch({ apiKeyId: tenant.id, inputs: inputsOf(3), callbackUrl: RECEIVER });
    await env.DB.prepare("UPDATE runs SET status = 'failed', finished_at = ? WHERE batch_id = ?")
      .bind(new Date().toISOString(), batch.id)
      .run();
    const contexts = [0, 1].map(() => {
      const execution = createExecutionContext();
      return { ctx: createServiceContext(env, execution), execution };
    });
    const done = await Promise.all(contexts.map(({ ctx }) => completeBatch(ctx, batch.id)));
    await Promise.all(contexts.map(({ execution }) => waitOnExecutionContext(execution)));
    expect(done.filter(Boolean)).toHaveLength(1);
    const { results } = await env.DB.prepare("SELECT * FROM deliveries WHERE batch_id = ?")
      .bind(batch.id)
      .all();
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({
      event: "batch.completed",
      run_id: batch.runs[0]?.id,
      status: "succeeded",
    });
    expect(receiver.calls).toHaveLength(1);
    expect(JSON.parse(receiver.calls[0]?.body ?? "{}").data.batch.counts).toEqual({ total: 3, failed: 3 });
  });

  it("leaves a run the stream did not bring to the per-run /result, after its grace", async () => {
    const tenant = await createTenant();
    const { sim, calls, client } = simulatorAtParallel({ time_scale: 1 });
    const batch = await insertBatch({
      apiKeyId: tenant.id,
      inputs: inputsOf(2),
      template: { processor: "lite", task_spec: SPEC },
    });
    await submitToGroup(client, batch);
    // The second input's Parallel run is outside the group (as a lost add-runs answer resubmitted alone).
    const alone = await client.taskRun.create({
      processor: "lite",
      input: "x",
      metadata: { taskrelay_run_id: batch.runs[1]?.id ?? "" },
    });
    await env.DB.prepare("UPDATE runs SET parallel_run_id = ? WHERE id = ?")
      .bind(alone.run_id, batch.runs[1]?.id)
      .run();
    for (const run of sim.control.runs()) if (run.run.is_active) sim.control.finishRun(run.run.run_id);
    await completionWebhook(alone.run_id);
    calls.length = 0;
    const now = Date.now();
    await tickUntilQuiet(new Date(now), 2);
    expect(calls.filter((c) => c.path.endsWith("/result"))).toEqual([]);
    let runs = await runsOf(batch);
    expect(runs[0]?.result_stored_at).toBeTruthy();
    expect(runs[1]).toMatchObject({ status: "completed", result_stored_at: null });
    // After the grace (10 min at TIME_SCALE 1) the per-run path fetches it: one /result.
    await tickUntilQuiet(new Date(now + 11 * 60_000), 2);
    expect(calls.filter((c) => c.path.endsWith("/result"))).toHaveLength(1);
    runs = await runsOf(batch);
    expect(runs[1]?.result_stored_at).toBeTruthy();
    // Then the batch completes at its next pass.
    await tickUntilQuiet(new Date(now + 25 * 60_000), 1);
    expect((await batchRow(batch.id))?.completed_at).toBeTruthy();
  });
});
