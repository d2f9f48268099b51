// The relay killed (SIGKILL) while a queue consumer batch is certainly in flight, then started again:
// every run still reaches its terminal state and every callback is delivered, with no side effect
// repeated beyond what at-least-once allows (the same delivery sent again under its webhook-id).
// Every webhook is dropped, so only the consumer's polls can finish the runs; the simulator holds
// every call open, so the kill lands while a consumer is waiting on its poll of Parallel.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type E2EStack, inParallel, isTerminal, listAllRuns, startE2EStack } from "./stack.ts";

const RUNS = 40;
const CREATE = "POST /v1/tasks/runs";
const RETRIEVE = "GET /v1/tasks/runs/{id}";

describe("a consumer killed mid-batch", () => {
  let e2e: E2EStack;
  beforeAll(async () => {
    e2e = await startE2EStack({
      timeScale: 0.001,
      // The Free plan's budget (the default): the consumer sends back what it cannot afford. Expiry
      // is not what this test is about (the deadline margin, 3,600 s, scales to 3.6 s).
      relayVars: { RUN_EXPIRY_MARGIN_SECONDS: "100000" },
    });
  }, 120_000);
  afterAll(async () => e2e?.stop());

  it("loses nothing when the relay dies while a consumer batch is working", async () => {
    await e2e.simConfig({ drop_webhooks: 1 });
    const created = new Set<string>();
    await inParallel(
      Array.from({ length: RUNS }, (_, i) => i),
      6,
      async (i) => {
        const run = await e2e.createRun(
          { processor: "lite", input: `Consumer killed ${i}`, callback: { url: e2e.receiver.url } },
          `consumer-killed-${i}`,
        );
        created.add(run.id);
      },
    );
    expect(created.size).toBe(RUNS);
    const finishedAtParallel = async () => (await e2e.simStats()).runs.completed >= RUNS;
    const deadline = Date.now() + 60_000;
    while (!(await finishedAtParallel())) {
      if (Date.now() > deadline) throw new Error("the simulator did not finish the runs");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }

    // Parallel now holds every call open: the first poll to reach it is a consumer mid-batch.
    await e2e.simConfig({ latency_ms: 60_000 });
    const polledBefore = (await e2e.simStats()).endpoints[RETRIEVE] ?? 0;
    const polled = async () => ((await e2e.simStats()).endpoints[RETRIEVE] ?? 0) > polledBefore;
    // Ticks hand the overdue polls to the queue until a consumer's poll is held at the simulator.
    await e2e.driveUntil(polled, 60_000, 500);
    const held = (await e2e.simStats()).endpoints[RETRIEVE] ?? 0;
    await e2e.stack.killRelay();
    await e2e.simConfig({ latency_ms: 0 });
    await e2e.stack.startRelay();

    // The killed batch's rows are leased; once the leases run out the tick hands them out again.
    await e2e.driveUntil(async () => {
      const runs = await listAllRuns(e2e);
      return runs.every((r) => isTerminal(r.status)) && e2e.receiver.accepted().size >= RUNS;
    }, 180_000);

    const runs = await listAllRuns(e2e);
    expect(runs.map((r) => r.id).sort()).toEqual([...created].sort());
    expect(runs.every((r) => r.status === "completed" && r.result_available)).toBe(true);
    // Every run delivered, each by exactly one delivery (one webhook-id): a resend after the kill is
    // the same delivery again, which the receiver may see twice (at-least-once), never a second one.
    const accepted = [...e2e.receiver.accepted().values()];
    const byRun = new Map<string, Set<string>>();
    for (const d of accepted) {
      const id = d.body?.data.run.id ?? "";
      byRun.set(id, (byRun.get(id) ?? new Set()).add(d.webhookId));
    }
    expect([...created].filter((id) => !byRun.has(id))).toEqual([]);
    expect([...byRun.values()].every((ids) => ids.size === 1)).toBe(true);
    // No run created twice at Parallel: polls never create.
    const stats = await e2e.simStats();
    expect(stats.endpoints[CREATE]).toBe(RUNS);
    expect(stats.endpoints[RETRIEVE] ?? 0).toBeGreaterThan(held);
  }, 360_000);
});
