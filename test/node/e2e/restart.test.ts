// The relay killed (SIGKILL) in the middle of a batch and started again: every run a client was told
// about, and every run the client retried with its Idempotency-Key, finishes and is delivered.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type E2EStack, inParallel, isTerminal, listAllRuns, startE2EStack } from "./stack.ts";

const RUNS = 120;

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
    let killed = false;
    await inParallel(
      Array.from({ length: RUNS }, (_, i) => i),
      6,
      async (i) => {
        if (i === RUNS / 2 && !killed) {
          killed = true;
          await e2e.stack.killRelay();
          setTimeout(() => void e2e.stack.startRelay(), 500);
        }
        const run = await e2e.createRun(
          { processor: "lite", input: `Restart ${i}`, callback: { url: e2e.receiver.url } },
          `restart-${i}`,
        );
        created.add(run.id);
      },
    );
    expect(killed).toBe(true);
    // Requests really were cut off by the crash and sent again.
    expect(e2e.connectionErrors).toBeGreaterThan(0);
    expect(created.size).toBe(RUNS);

    await e2e.driveUntil(async () => {
      const runs = await listAllRuns(e2e);
      return runs.every((r) => isTerminal(r.status)) && e2e.receiver.accepted().size >= created.size;
    }, 120_000);

    const runs = await listAllRuns(e2e);
    // Idempotency keys kept retried creates from making extra runs.
    expect(runs.map((r) => r.id).sort()).toEqual([...created].sort());
    expect(runs.every((r) => r.status === "completed" && r.result_available)).toBe(true);
    const delivered = new Set([...e2e.receiver.accepted().values()].map((d) => d.body?.data.run.id));
    expect([...created].every((id) => delivered.has(id))).toBe(true);
  }, 240_000);
});
