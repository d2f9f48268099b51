// GET /v1/runs/:id/progress: Parallel's run events relayed as SSE, de-duplicated across Parallel's
// reconnects, ending with taskrelay's own view of the finished run.
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { findRun } from "../../src/db/runs";
import { createLogger } from "../../src/log";
import { createServiceContext } from "../../src/services/context";
import { followRunProgress, type ProgressEvent, progressRuntime } from "../../src/services/run-progress";
import { storeFinishedRun } from "./delivery-harness";
import {
  api,
  createTenant,
  expectJson,
  fakeParallel,
  parallelError,
  postJson,
  TEXT_RUN,
  type Tenant,
} from "./harness";
import {
  eventData,
  eventNames,
  fakeEvents,
  message,
  readProgress,
  setRunState,
  state,
  stats,
} from "./progress-harness";

async function activeRun(tenant: Tenant) {
  fakeParallel();
  return expectJson<{ id: string; parallel_run_id: string; status: string }>(
    await postJson("/v1/runs", TEXT_RUN, tenant.auth),
    202,
  );
}

describe("GET /v1/runs/:id/progress", () => {
  it("sends a finished run's final state at once and closes, without calling Parallel", async () => {
    const tenant = await createTenant();
    const run = await storeFinishedRun(tenant.id);
    const events = fakeEvents([[]]);
    const { response, reading } = await readProgress(`/v1/runs/${run.id}/progress`, tenant.auth);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    expect(response.headers.get("cache-control")).toBe("no-cache");
    expect(eventNames(reading)).toEqual(["run", "end"]);
    expect(reading.events[0]?.retry).toBe(2000);
    expect(eventData(reading.events[1])).toMatchObject({
      id: run.id,
      status: "completed",
      result_available: true,
    });
    expect(events.calls).toHaveLength(0);
  });

  it("relays stats and messages of an active run and ends with the run as taskrelay stored it", async () => {
    const tenant = await createTenant();
    const run = await activeRun(tenant);
    const events = fakeEvents([
      [
        state(run.parallel_run_id, "running"),
        message("exec_status", "Starting research"),
        stats(10),
        message("plan", "Planning research on <b>France</b>"),
        { comment: "ping" },
        stats(65),
        () => setRunState(run.id, "completed"),
        stats(100),
        state(run.parallel_run_id, "completed"),
      ],
    ]);
    const { reading } = await readProgress(`/v1/runs/${run.id}/progress`, tenant.auth);
    expect(eventNames(reading)).toEqual([
      "run",
      "run",
      "task_run.progress_msg.exec_status",
      "task_run.progress_stats",
      "task_run.progress_msg.plan",
      "task_run.progress_stats",
      "task_run.progress_stats",
      "run",
      "end",
    ]);
    expect(eventData(reading.events[0])).toMatchObject({ id: run.id, status: "queued" });
    // Parallel's stream is how taskrelay learns the run started: recorded, and on its timeline.
    expect(eventData(reading.events[1])).toMatchObject({ id: run.id, status: "running" });
    const timeline = await expectJson<{ events: Array<{ kind: string; detail: unknown }> }>(
      await api(`/v1/runs/${run.id}/timeline`, { headers: tenant.auth }),
      200,
    );
    expect(timeline.events.map((e) => e.detail)).toContainEqual({
      source: "progress",
      from: "queued",
      to: "running",
    });
    expect(eventData(reading.events[3])).toEqual({
      type: "task_run.progress_stats",
      progress_meter: 10,
      source_stats: {
        num_sources_considered: 30,
        num_sources_read: 4,
        sources_read_sample: ["https://en.wikipedia.org/wiki/Example"],
      },
    });
    expect(eventData(reading.events[4])).toMatchObject({ message: "Planning research on <b>France</b>" });
    expect(eventData(reading.events[8])).toMatchObject({ status: "completed", result_available: true });
    expect(events.calls.map((c) => c.parallelRunId)).toEqual([run.parallel_run_id]);
  });

  it("never moves a run back to running: a status recorded meanwhile stays", async () => {
    const tenant = await createTenant();
    const run = await activeRun(tenant);
    fakeEvents([
      [
        // The webhook recorded the completion while the stream still reported the run running.
        () => setRunState(run.id, "completed"),
        state(run.parallel_run_id, "running"),
        state(run.parallel_run_id, "completed"),
      ],
    ]);
    const { reading } = await readProgress(`/v1/runs/${run.id}/progress`, tenant.auth);
    expect(reading.events.map((e) => eventData(e).status)).toEqual(["queued", "completed", "completed"]);
    expect((await findRun(env.DB, run.id))?.status).toBe("completed");
    const timeline = await expectJson<{ events: Array<{ detail: { source?: string } | null }> }>(
      await api(`/v1/runs/${run.id}/timeline`, { headers: tenant.auth }),
      200,
    );
    expect(timeline.events.filter((e) => e.detail?.source === "progress")).toEqual([]);
  });

  it("reconnects when Parallel closes its stream and relays each replayed message once", async () => {
    const tenant = await createTenant();
    const run = await activeRun(tenant);
    const first = [
      state(run.parallel_run_id, "running"),
      message("exec_status", "Starting research", "2026-11-28T10:00:00.000Z"),
      message("plan", "Planning", "2026-11-28T10:00:01.000Z"),
      stats(20),
    ];
    // Parallel's window closed; the next connection replays the whole trace and the latest stats.
    const second = [
      state(run.parallel_run_id, "running"),
      ...first.slice(1),
      message("search", "Searching", "2026-11-28T10:09:40.000Z"),
      stats(80),
      () => setRunState(run.id, "completed"),
      state(run.parallel_run_id, "completed"),
    ];
    const events = fakeEvents([first, second]);
    const { reading } = await readProgress(`/v1/runs/${run.id}/progress`, tenant.auth);
    expect(eventNames(reading)).toEqual([
      "run",
      "run", // running
      "task_run.progress_msg.exec_status",
      "task_run.progress_msg.plan",
      "task_run.progress_stats",
      "task_run.progress_msg.search",
      "task_run.progress_stats",
      "run",
      "end",
    ]);
    expect(events.calls).toHaveLength(2);
  });

  it("waits for a submitting run to reach Parallel, then follows it", async () => {
    const tenant = await createTenant();
    // Parallel is briefly unavailable: the run stays `submitting`, with no Parallel id.
    fakeParallel({ create: () => parallelError(503, "Service unavailable") });
    const run = await expectJson<{ id: string; status: string; parallel_run_id: string | null }>(
      await postJson("/v1/runs", TEXT_RUN, tenant.auth),
      202,
    );
    expect(run).toMatchObject({ status: "submitting", parallel_run_id: null });
    const parallelId = `trun_${"c".repeat(32)}`;
    const events = fakeEvents([
      [
        state(parallelId, "running"),
        stats(50),
        () => setRunState(run.id, "failed"),
        state(parallelId, "failed"),
      ],
    ]);
    setTimeout(() => void setRunState(run.id, "queued", { parallel_run_id: parallelId }), 150);
    const { reading } = await readProgress(`/v1/runs/${run.id}/progress`, tenant.auth);
    expect(eventNames(reading)).toEqual(["run", "run", "run", "task_run.progress_stats", "run", "end"]);
    expect(reading.events.filter((e) => e.event === "run").map((e) => eventData(e).status)).toEqual([
      "submitting",
      "queued",
      "running",
      "failed",
    ]);
    expect(eventData(reading.events[5])).toMatchObject({ status: "failed", result_available: false });
    expect(events.calls.map((c) => c.parallelRunId)).toEqual([parallelId]);
  });

  it("follows the run in D1 when Parallel has no events for it, and backs off on a transient failure", async () => {
    const tenant = await createTenant();
    const run = await activeRun(tenant);
    const events = fakeEvents([
      () => parallelError(503, "Service unavailable"),
      () => parallelError(404, "Run id not found"),
    ]);
    setTimeout(() => void setRunState(run.id, "completed"), 400);
    const { reading } = await readProgress(`/v1/runs/${run.id}/progress`, tenant.auth);
    expect(eventNames(reading)).toEqual(["run", "run", "end"]);
    expect(eventData(reading.events[2])).toMatchObject({ status: "completed", result_available: true });
    expect(events.calls).toHaveLength(2);
  });

  it("keeps an idle stream open with comment lines", async () => {
    const tenant = await createTenant();
    const run = await activeRun(tenant);
    fakeEvents([{ open: [state(run.parallel_run_id, "running")] }]);
    const { reading } = await readProgress(`/v1/runs/${run.id}/progress`, tenant.auth, {
      settings: { POLL_TIME_SCALE: "0.001" },
      until: (r) => r.comments.length >= 2,
    });
    expect(reading.comments.slice(0, 2)).toEqual(["keep-alive", "keep-alive"]);
    expect(reading.events.map((e) => eventData(e).status)).toEqual(["queued", "running"]);
  });

  it("stops reading from Parallel when the client goes away", async () => {
    const tenant = await createTenant();
    const run = await activeRun(tenant);
    const events = fakeEvents([{ open: [state(run.parallel_run_id, "running"), stats(5)] }]);
    await readProgress(`/v1/runs/${run.id}/progress`, tenant.auth, {
      until: (r) => r.events.some((e) => e.event === "task_run.progress_stats"),
    });
    const deadline = Date.now() + 3000;
    while (!events.calls[0]?.signal.aborted && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    expect(events.calls[0]?.signal.aborted).toBe(true);
  });

  it("is 404 for another key's run and for an unknown id, before any stream", async () => {
    const owner = await createTenant();
    const intruder = await createTenant();
    const run = await storeFinishedRun(owner.id);
    for (const id of [run.id, "run_01M8GW000000000000000000XX"]) {
      const response = await api(`/v1/runs/${id}/progress`, { headers: intruder.auth });
      const body = await expectJson<{ error: { code: string } }>(response, 404);
      expect(body.error.code).toBe("not_found");
    }
  });
});

describe("followRunProgress", () => {
  it("ends a connection without `end` when its time is up, so the client reconnects", async () => {
    const tenant = await createTenant();
    const run = await activeRun(tenant);
    // Parallel's stream stays open: only the connection's time limit can end it.
    const events = fakeEvents([{ open: [state(run.parallel_run_id, "running"), stats(40)] }]);
    const ctx = createServiceContext(env, createExecutionContext(), { log: createLogger() });
    const stored = await findRun(env.DB, run.id);
    if (!stored) throw new Error("run not stored");
    const runtime = { ...progressRuntime(1), maxStreamMs: 300 };
    const seen: ProgressEvent["event"][] = [];
    for await (const event of followRunProgress(ctx, stored, new AbortController().signal, runtime)) {
      seen.push(event.event);
    }
    expect(seen).toEqual(["run", "run", "task_run.progress_stats"]);
    // It ended on the time limit: the one upstream connection was aborted, and none was opened after it.
    expect(events.calls).toHaveLength(1);
    expect(events.calls[0]?.signal.aborted).toBe(true);
  });

  it("caps its connections to Parallel, and backs off after Parallel's error events", async () => {
    const tenant = await createTenant();
    const run = await activeRun(tenant);
    const events = fakeEvents([
      [
        state(run.parallel_run_id, "running"),
        { type: "error", error: { ref_id: "x", message: "Internal error" } },
      ],
    ]);
    const ctx = createServiceContext(env, createExecutionContext());
    const stored = await findRun(env.DB, run.id);
    if (!stored) throw new Error("run not stored");
    const runtime = { ...progressRuntime(1), reconnectMs: 20, maxBackoffMs: 100, maxUpstreamConnections: 4 };
    const seen: string[] = [];
    const started = Date.now();
    for await (const event of followRunProgress(ctx, stored, new AbortController().signal, runtime)) {
      seen.push(event.event);
    }
    const elapsed = Date.now() - started;
    expect(seen).toEqual(["run", "run"]);
    expect(events.calls).toHaveLength(4);
    // Backing off 40, 80 and 100 ms between the four connections, not 20 ms each.
    expect(elapsed).toBeGreaterThanOrEqual(200);
  });

  it("ends before its invocation runs out of calls (SUBREQUEST_BUDGET), so the client reconnects", async () => {
    const tenant = await createTenant();
    // Parallel is unavailable: the run waits in `submitting`, and the stream re-reads it from D1.
    fakeParallel({ create: () => parallelError(503, "Service unavailable") });
    const run = await expectJson<{ id: string }>(await postJson("/v1/runs", TEXT_RUN, tenant.auth), 202);
    const ctx = createServiceContext({ ...env, SUBREQUEST_BUDGET: "12" }, createExecutionContext());
    const stored = await findRun(env.DB, run.id);
    if (!stored) throw new Error("run not stored");
    const runtime = { ...progressRuntime(1), pollMs: 5 };
    const seen: string[] = [];
    for await (const event of followRunProgress(ctx, stored, new AbortController().signal, runtime)) {
      seen.push(event.event);
    }
    expect(seen).toEqual(["run"]);
    expect(ctx.usage.d1_queries).toBeGreaterThan(3);
    expect(ctx.usage.d1_queries).toBeLessThanOrEqual(12);
  });

  it("returns at once when its signal aborts", async () => {
    const tenant = await createTenant();
    const run = await activeRun(tenant);
    fakeEvents([{ open: [state(run.parallel_run_id, "running")] }]);
    const ctx = createServiceContext(env, createExecutionContext());
    const stored = await findRun(env.DB, run.id);
    if (!stored) throw new Error("run not stored");
    const abort = new AbortController();
    const seen: string[] = [];
    setTimeout(() => abort.abort(), 100);
    for await (const event of followRunProgress(ctx, stored, abort.signal, progressRuntime(1))) {
      seen.push(event.event);
    }
    expect(seen).toEqual(["run", "run"]);
  });
});
