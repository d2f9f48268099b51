// Every fault at once, on real processes: webhooks dropped, duplicated and delayed past the first
// poll, Parallel's GET endpoints failing, creates throttled, and a receiver that fails the first two
// attempts of every delivery. Nothing may be lost and no client request may see a 5xx.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type E2EStack, inParallel, isTerminal, listAllRuns, startE2EStack } from "./stack.ts";

const RUNS = 300;

describe("faults together", () => {
  let e2e: E2EStack;
  beforeAll(async () => {
    e2e = await startE2EStack({
      timeScale: 0.001,
      // A run's deadline margin (3,600 s) scales to 3.6 s here, less than the local queue (one consumer
      // batch at a time) may take to reach a backlog's last poll: 100 s keeps expiry out of this test.
      relayVars: { SWEEP_BATCH_SIZE: "100", SUBREQUEST_BUDGET: "1000", RUN_EXPIRY_MARGIN_SECONDS: "100000" },
    });
  }, 120_000);
  afterAll(async () => e2e?.stop());

  it(`loses nothing across ${RUNS} runs`, async () => {
    await e2e.simConfig({
      drop_webhooks: 0.3,
      duplicate_webhooks: 0.2,
      delay_webhooks: 0.1,
      webhook_delay_ms: 3_000, // past the first poll of every processor used here at this time scale
      error_rate_by_endpoint: {
        "GET /v1/tasks/runs/{id}": 0.1,
        "GET /v1/tasks/runs/{id}/result": 0.1,
        "GET /v1/tasks/runs/{id}/input": 0.1,
      },
      throttle_rate: 0.05,
      fail_runs: 0.05,
    });
    e2e.receiver.setFailFirstAttempts(2);

    const processors = ["lite", "base", "core", "lite-fast"];
    const created: string[] = [];
    await inParallel(
      Array.from({ length: RUNS }, (_, i) => i),
      8,
      async (i) => {
        const run = await e2e.createRun(
          {
            processor: processors[i % processors.length],
            input: `Question ${i}`,
            callback: { url: e2e.receiver.url },
          },
          `fault-${i}`,
        );
        created.push(run.id);
      },
    );
    expect(new Set(created).size).toBe(RUNS);

    // Background work goes through the queue, and wrangler dev's local queue runs one consumer batch
    // (2 messages) at a time where Cloudflare runs up to 250: the backlog is given time.
    await e2e.driveUntil(async () => {
      const runs = await listAllRuns(e2e);
      return (
        runs.length === RUNS &&
        runs.every((r) => isTerminal(r.status)) &&
        e2e.receiver.accepted().size >= RUNS
      );
    }, 300_000);

    const runs = await listAllRuns(e2e);
    expect(runs).toHaveLength(RUNS);
    const completed = runs.filter((r) => r.status === "completed");
    expect(completed.every((r) => r.result_available)).toBe(true);
    expect(
      runs.filter((r) => !["completed", "failed"].includes(r.status)).map((r) => [r.id, r.status]),
    ).toEqual([]);

    // Every run delivered exactly once for its one event: one webhook-id per run, taken once (every
    // attempt counted, not the receiver's first-per-id view), verified, with the run's final status.
    const taken = e2e.receiver.deliveries.filter((d) => d.accepted);
    const takenPerWebhookId = new Map<string, number>();
    for (const d of taken) takenPerWebhookId.set(d.webhookId, (takenPerWebhookId.get(d.webhookId) ?? 0) + 1);
    expect([...takenPerWebhookId.entries()].filter(([, n]) => n !== 1)).toEqual([]);
    for (const run of runs) {
      const ofRun = taken.filter((d) => d.body?.data.run.id === run.id);
      expect(
        ofRun.map((d) => [d.body?.type, d.body?.data.run.status]),
        `run ${run.id}`,
      ).toEqual([[run.status === "completed" ? "run.completed" : "run.failed", run.status]]);
    }
    expect(taken).toHaveLength(RUNS);
    expect(e2e.receiver.deliveries.every((d) => d.verified)).toBe(true);
    expect(e2e.statuses.filter((s) => s >= 500)).toEqual([]);

    const stats = await e2e.simStats();
    expect(stats.webhooks.dropped).toBeGreaterThan(0);
    expect(stats.webhooks.duplicated).toBeGreaterThan(0);
    // The result path's bound: exactly one /result answered per completed run (none for a failed
    // one); every other /result call is a retry of a fault the simulator injected (5xx or 429).
    const resultStatuses = stats.statuses["GET /v1/tasks/runs/{id}/result"] ?? {};
    expect(resultStatuses["200"]).toBe(completed.length);
    expect(
      Object.keys(resultStatuses).filter((code) => !["200", "429", "500", "502", "503"].includes(code)),
    ).toEqual([]);
  }, 420_000);
});
