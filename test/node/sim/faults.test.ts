// Every fault setting takes effect, and each is reproducible: the same SIM_SEED and the same
// sequence of requests give the same faults. Sample sizes make the checks exact, not statistical.

import { InternalServerError, RateLimitError } from "parallel-web";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_CONFIG } from "../../../sim/config.ts";
import { Faults } from "../../../sim/faults.ts";
import type { SimHandle } from "../../../sim/server.ts";
import { call, type Receiver, sdk, startReceiver, startTestSim, until } from "./harness.ts";

const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((handle) => handle.close()));
});

async function sim(settings: Record<string, unknown>): Promise<SimHandle> {
  const handle = await startTestSim({ run_duration_ms: 0, ...settings });
  open.push(handle);
  return handle;
}

async function receiver(): Promise<Receiver> {
  const handle = await startReceiver();
  open.push(handle);
  return handle;
}

/** Creates `count` runs one after another (so seq = creation order); returns their ids. */
async function createRuns(handle: SimHandle, count: number, webhookUrl?: string): Promise<string[]> {
  const client = sdk(handle);
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const run = await client.taskRun.create({
      input: `run ${i}`,
      processor: "lite",
      ...(webhookUrl ? { webhook: { url: webhookUrl }, betas: ["webhook-2025-08-12" as const] } : {}),
    });
    ids.push(run.run_id);
  }
  return ids;
}

async function settle(handle: SimHandle, runs: number): Promise<void> {
  await until(() => {
    const stats = handle.control.stats();
    return stats.runs.completed + stats.runs.failed === runs;
  });
}

/** Which seqs (creation order) `pick` selects, from a fresh sim with these settings. */
async function seqsWhere(
  settings: Record<string, unknown>,
  count: number,
  pick: (handle: SimHandle) => Promise<Set<string>>,
): Promise<number[]> {
  const handle = await sim(settings);
  const ids = await createRuns(handle, count);
  await settle(handle, count);
  const picked = await pick(handle);
  return ids.flatMap((id, seq) => (picked.has(id) ? [seq] : []));
}

describe("fail_runs", () => {
  const failedIds = async (handle: SimHandle): Promise<Set<string>> =>
    new Set(handle.control.runs({ status: "failed" }).map((view) => view.run.run_id));

  it("fails the seeded fraction of runs, the same ones for the same seed", async () => {
    const a = await seqsWhere({ seed: 7, fail_runs: 0.5 }, 40, failedIds);
    const b = await seqsWhere({ seed: 7, fail_runs: 0.5 }, 40, failedIds);
    const c = await seqsWhere({ seed: 8, fail_runs: 0.5 }, 40, failedIds);
    expect(a.length).toBeGreaterThan(10);
    expect(a.length).toBeLessThan(30);
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
    expect(await seqsWhere({ fail_runs: 0 }, 10, failedIds)).toEqual([]);
    expect(await seqsWhere({ fail_runs: 1 }, 10, failedIds)).toHaveLength(10);
  });

  it("fail_planned tells which runs will fail", async () => {
    const handle = await sim({ seed: 11, fail_runs: 0.5, run_duration_ms: 50 });
    await createRuns(handle, 20);
    const planned = handle.control.runs().map((view) => view.fail_planned);
    await settle(handle, 20);
    expect(handle.control.runs().map((view) => view.run.status === "failed")).toEqual(planned);
  });
});

describe("webhook faults", () => {
  it("drop_webhooks: the seeded fraction is never sent", async () => {
    const droppedSeqs = async (seed: number): Promise<number[]> => {
      const hook = await receiver();
      const handle = await sim({ seed, drop_webhooks: 0.5 });
      const ids = await createRuns(handle, 30, hook.url);
      await until(() => {
        const { delivered, dropped } = handle.control.stats().webhooks;
        return delivered + dropped === 30;
      });
      const { dropped } = handle.control.stats().webhooks;
      expect(dropped).toBeGreaterThan(5);
      expect(dropped).toBeLessThan(25);
      expect(hook.received).toHaveLength(30 - dropped);
      const log = handle.control.webhooks().filter((a) => a.outcome === "dropped");
      expect(log).toHaveLength(dropped);
      expect(log.every((a) => a.attempt === 0 && a.status_code === null)).toBe(true);
      const droppedIds = new Set(log.map((a) => a.run_id));
      const deliveredIds = new Set(
        hook.received.map((w) => (JSON.parse(w.body) as { data: { run_id: string } }).data.run_id),
      );
      expect([...droppedIds].some((id) => deliveredIds.has(id))).toBe(false);
      return ids.flatMap((id, seq) => (droppedIds.has(id) ? [seq] : []));
    };
    const first = await droppedSeqs(3);
    expect(await droppedSeqs(3)).toEqual(first);
    expect(await droppedSeqs(4)).not.toEqual(first);
  });

  it("duplicate_webhooks: the same event (id and body) arrives twice", async () => {
    const hook = await receiver();
    const handle = await sim({ duplicate_webhooks: 1 });
    await createRuns(handle, 5, hook.url);
    const received = await hook.waitFor(10);
    await until(() => handle.control.stats().webhooks.delivered === 10);
    const byId = new Map<string, string[]>();
    for (const webhook of received) {
      const id = String(webhook.headers["webhook-id"]);
      byId.set(id, [...(byId.get(id) ?? []), webhook.body]);
    }
    expect(byId.size).toBe(5);
    for (const bodies of byId.values()) expect(new Set(bodies).size).toBe(1);
    expect(handle.control.stats().webhooks).toMatchObject({ duplicated: 5, sent: 10, delivered: 10 });
    expect(handle.control.webhooks().filter((a) => a.copy === "duplicate")).toHaveLength(5);
  });

  it("duplicate_webhooks below 1 duplicates a seeded subset", async () => {
    const hook = await receiver();
    const handle = await sim({ seed: 5, duplicate_webhooks: 0.5 });
    await createRuns(handle, 20, hook.url);
    await settle(handle, 20);
    const { duplicated } = handle.control.stats().webhooks;
    expect(duplicated).toBeGreaterThan(3);
    expect(duplicated).toBeLessThan(17);
    await hook.waitFor(20 + duplicated);
  });

  it("delay_webhooks: delivery waits webhook_delay_ms after the run ends", async () => {
    const hook = await receiver();
    const handle = await sim({ delay_webhooks: 1, webhook_delay_ms: 300 });
    const [runId] = await createRuns(handle, 1, hook.url);
    const [webhook] = await hook.waitFor(1);
    const completedAt = handle.control.run(runId ?? "")?.completed_at_ms ?? Number.NaN;
    expect((webhook?.atMs ?? 0) - completedAt).toBeGreaterThanOrEqual(295);
    expect(handle.control.stats().webhooks.delayed).toBe(1);

    handle.control.updateConfig({ delay_webhooks: 0 });
    const [fastId] = await createRuns(handle, 1, hook.url);
    const [, fast] = await hook.waitFor(2);
    // Not delayed: still the one delayed webhook, and this one after its run ended.
    expect(handle.control.stats().webhooks.delayed).toBe(1);
    expect(fast?.atMs ?? 0).toBeGreaterThanOrEqual(
      handle.control.run(fastId ?? "")?.completed_at_ms ?? Infinity,
    );
  });

  it("settings changed live through POST /_sim/config apply to the next events", async () => {
    const hook = await receiver();
    const handle = await sim({});
    await createRuns(handle, 1, hook.url);
    await hook.waitFor(1);
    const changed = await call(handle, "POST", "/_sim/config", { body: { drop_webhooks: 1 }, apiKey: null });
    expect(changed.status).toBe(200);
    expect(changed.json).toMatchObject({ drop_webhooks: 1 });
    await createRuns(handle, 3, hook.url);
    await until(() => handle.control.stats().webhooks.dropped === 3);
    expect(hook.received).toHaveLength(1);
  });
});

describe("API faults", () => {
  /** Statuses of `count` retrieve calls in a fresh sim. */
  async function retrieveStatuses(settings: Record<string, unknown>, count: number): Promise<number[]> {
    const handle = await sim(settings);
    const [runId] = await createRuns(handle, 1);
    const statuses: number[] = [];
    for (let i = 0; i < count; i++)
      statuses.push((await call(handle, "GET", `/v1/tasks/runs/${runId}`)).status);
    const injected = statuses.filter((s) => s >= 500).length;
    expect(handle.control.stats().injected_errors).toBe(injected);
    return statuses;
  }

  it("error_rate: 5xx on the seeded fraction of calls, reproducibly", async () => {
    const settings = { seed: 21, error_rate_by_endpoint: { "POST /v1/tasks/runs": 0 }, error_rate: 0.3 };
    const a = await retrieveStatuses(settings, 50);
    const errors = a.filter((s) => s >= 500);
    expect(errors.length).toBeGreaterThan(5);
    expect(errors.length).toBeLessThan(25);
    expect(new Set(errors).size).toBeGreaterThan(1);
    for (const status of errors) expect([500, 502, 503]).toContain(status);
    expect(await retrieveStatuses(settings, 50)).toEqual(a);
    expect(await retrieveStatuses({ ...settings, seed: 22 }, 50)).not.toEqual(a);
  });

  it("error_rate_by_endpoint overrides error_rate for the named endpoint", async () => {
    const handle = await sim({ error_rate: 1, error_rate_by_endpoint: { "POST /v1/tasks/runs": 0 } });
    const client = sdk(handle);
    const run = await client.taskRun.create({ input: "x", processor: "lite" });
    const error = await client.taskRun.retrieve(run.run_id).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InternalServerError);
    expect((error as InternalServerError).error).toMatchObject({
      type: "error",
      error: { detail: { fault: "error_rate" } },
    });
    for (const path of ["/input", "/result?timeout=0", "/events"]) {
      expect(
        (await call(handle, "GET", `/v1/tasks/runs/${run.run_id}${path}`)).status,
      ).toBeGreaterThanOrEqual(500);
    }
    const only = await sim({ error_rate_by_endpoint: { "GET /v1/tasks/runs/{id}/input": 1 } });
    const [id] = await createRuns(only, 1);
    expect((await call(only, "GET", `/v1/tasks/runs/${id}`)).status).toBe(200);
    expect((await call(only, "GET", `/v1/tasks/runs/${id}/input`)).status).toBeGreaterThanOrEqual(500);
  });

  it("throttle_rate: 429 with retry-after on create only; reads are untouched", async () => {
    const handle = await sim({});
    const [runId] = await createRuns(handle, 1);
    handle.control.updateConfig({ throttle_rate: 1 });
    const error = await sdk(handle)
      .taskRun.create({ input: "x", processor: "lite" })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RateLimitError);
    expect((error as RateLimitError).headers.get("retry-after")).toBe("1");
    expect((await call(handle, "GET", `/v1/tasks/runs/${runId}`)).status).toBe(200);
    expect(handle.control.stats()).toMatchObject({ injected_throttles: 1, rate_limited: 0 });
  });

  it("throttle_rate below 1 throttles a seeded subset; by endpoint it reaches reads too", async () => {
    const pattern = async (seed: number): Promise<number[]> => {
      const handle = await sim({ seed, throttle_rate: 0.4 });
      const statuses: number[] = [];
      for (let i = 0; i < 30; i++) {
        statuses.push(
          (await call(handle, "POST", "/v1/tasks/runs", { body: { input: "x", processor: "lite" } })).status,
        );
      }
      return statuses;
    };
    const a = await pattern(1);
    expect(a.filter((s) => s === 429).length).toBeGreaterThan(4);
    expect(a.filter((s) => s === 202).length).toBeGreaterThan(4);
    expect(await pattern(1)).toEqual(a);

    const handle = await sim({ throttle_rate_by_endpoint: { "GET /v1/tasks/runs/{id}/result": 1 } });
    const [runId] = await createRuns(handle, 1);
    expect((await call(handle, "GET", `/v1/tasks/runs/${runId}/result`)).status).toBe(429);
  });

  it("latency_ms delays every answer; latency_jitter_ms adds a seeded 0..N ms", async () => {
    const handle = await sim({ latency_ms: 150 });
    const started = Date.now();
    const answer = await call(handle, "GET", "/v1/tasks/runs/trun_unknown");
    expect(answer.status).toBe(404);
    expect(Date.now() - started).toBeGreaterThanOrEqual(145);

    const jitter = (seed: number): number[] => {
      const faults = new Faults(() => ({ ...DEFAULT_CONFIG, seed, latency_ms: 10, latency_jitter_ms: 50 }));
      return Array.from({ length: 200 }, (_, i) => faults.latencyMs("GET /v1/tasks/runs/{id}", i));
    };
    const values = jitter(1);
    expect(Math.min(...values)).toBeGreaterThanOrEqual(10);
    expect(Math.max(...values)).toBeLessThanOrEqual(60);
    expect(new Set(values).size).toBeGreaterThan(20);
    expect(jitter(1)).toEqual(values);
    expect(jitter(2)).not.toEqual(values);
  });
});

describe("run durations", () => {
  it("run_duration_jitter_ms spreads a fixed duration over a seeded 0..N ms; 0 keeps it exact", async () => {
    const planned = async (settings: Record<string, unknown>) => {
      const handle = await sim({ run_duration_ms: 60_000, ...settings });
      await createRuns(handle, 30);
      return handle.control.runs().map((view) => view.planned_duration_ms);
    };
    expect(new Set(await planned({}))).toEqual(new Set([60_000]));
    const spread = await planned({ seed: 3, run_duration_jitter_ms: 1_000 });
    expect(Math.min(...spread)).toBeGreaterThanOrEqual(60_000);
    expect(Math.max(...spread)).toBeLessThan(61_000);
    expect(new Set(spread.map(Math.floor)).size).toBeGreaterThan(25);
    expect(await planned({ seed: 3, run_duration_jitter_ms: 1_000 })).toEqual(spread);
    expect(await planned({ seed: 4, run_duration_jitter_ms: 1_000 })).not.toEqual(spread);
  });

  it("runs made in one call end apart: each draws its own duration in the processor's range", async () => {
    const handle = await sim({ run_duration_ms: null });
    const client = sdk(handle);
    const group = await client.taskGroup.create({});
    await client.taskGroup.addRuns(group.taskgroup_id, {
      inputs: Array.from({ length: 100 }, (_, i) => ({ input: `row ${i}`, processor: "lite" })),
    });
    const durations = handle.control.runs().map((view) => view.planned_duration_ms);
    // lite is 10–60 s at Parallel (§8), × 0.001 here.
    expect(Math.min(...durations)).toBeGreaterThanOrEqual(10);
    expect(Math.max(...durations)).toBeLessThanOrEqual(60);
    expect(Math.max(...durations) - Math.min(...durations)).toBeGreaterThan(30);
    expect(new Set(durations).size).toBe(100);
  });
});
