// The relay killed (SIGKILL) in the middle of a batch and started again: every run a client was told
// about, and every run the client retried with its Idempotency-Key, finishes and is delivered. One
// create is killed at the worst moment on purpose: stored in D1, its call to Parallel held open by
// the simulator, its answer never sent; the client's retry must find that stored run.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type E2EStack, inParallel, isTerminal, listAllRuns, startE2EStack } from "./stack.ts";

const RUNS = 120;
const CREATE = "POST /v1/tasks/runs";

describe("relay restart", () => {
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

  it("loses nothing when the relay dies mid-batch", async () => {
    // Half the webhooks are lost while the relay is down anyway; drop some more for good measure.
    await e2e.simConfig({ drop_webhooks: 0.2 });
    const created = new Set<string>();
    const createRuns = (from: number, to: number) =>
      inParallel(
        Array.from({ length: to - from }, (_, i) => from + i),
        6,
        async (i) => {
          const run = await e2e.createRun(
            { processor: "lite", input: `Restart ${i}`, callback: { url: e2e.receiver.url } },
            `restart-${i}`,
          );
          created.add(run.id);
        },
      );
    await createRuns(0, RUNS / 2);

    // The simulator holds every call before answering: the next create reaches it only after the
    // relay has stored its run (createRun stores first), and gets no answer before the kill.
    await e2e.simConfig({ latency_ms: 60_000 });
    const callsBefore = (await e2e.simStats()).endpoints[CREATE] ?? 0;
    const cutOffBefore = e2e.connectionErrors;
    const held = e2e.createRun(
      { processor: "lite", input: "Held at Parallel", callback: { url: e2e.receiver.url } },
      "restart-held",
    );
    const deadline = Date.now() + 60_000;
    while (((await e2e.simStats()).endpoints[CREATE] ?? 0) === callsBefore) {
      if (Date.now() > deadline) throw new Error("the held create never reached the simulator");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const killedAt = new Date().toISOString();
    await e2e.stack.killRelay();
    await e2e.simConfig({ latency_ms: 0 });
    // The other half is sent while the relay is down and as it comes back.
    const restarted = e2e.stack.startRelay();
    const rest = createRuns(RUNS / 2, RUNS);
    const heldRun = await held;
    await Promise.all([restarted, rest]);

    // The held create was cut off (the client saw its connection fail and sent it again) and its
    // retry was answered with the run stored before the kill: the idempotency check did the work.
    expect(e2e.connectionErrors).toBeGreaterThan(cutOffBefore);
    expect(heldRun.replayed).toBe(true);
    const timeline = await e2e.get<{ events: Array<{ kind: string; at: string }> }>(
      `/v1/runs/${heldRun.id}/timeline`,
    );
    const stored = timeline.events[0];
    expect(stored?.kind).toBe("stored");
    expect((stored?.at ?? "") < killedAt, `stored at ${stored?.at}, killed at ${killedAt}`).toBe(true);
    created.add(heldRun.id);
    expect(created.size).toBe(RUNS + 1);

    await e2e.driveUntil(async () => {
      const runs = await listAllRuns(e2e);
      return runs.every((r) => isTerminal(r.status)) && e2e.receiver.accepted().size >= created.size;
    }, 120_000);

    const runs = await listAllRuns(e2e);
    // Idempotency keys kept retried creates from making extra runs.
    expect(runs.map((r) => r.id).sort()).toEqual([...created].sort());
    expect(runs.every((r) => r.status === "completed" && r.result_available)).toBe(true);
    const delivered = new Set([...e2e.receiver.accepted().values()].map((d) => d.body?.data.run.id));
    expect([...created].filter((id) => !delivered.has(id))).toEqual([]);
  }, 240_000);
});
