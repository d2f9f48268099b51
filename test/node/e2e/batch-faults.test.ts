// A batch end to end on real processes (the simulator + the relay under wrangler dev), under the
// faults faults.test.ts injects: webhooks dropped, duplicated and delayed, Parallel's calls answering
// 5xx (the group's add-runs and runs stream included) or 429, runs failing, and a receiver that fails
// the first two attempts of its callback. Nothing may be lost: one run per input, created once at
// Parallel, each finished with its output (or its error), one signed batch.completed, and both
// exports whole and in input order — at a Parallel cost of a batch, not of as many single runs.
import { appendFileSync } from "node:fs";
import { parse } from "csv-parse/sync";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type E2EStack, isTerminal, startE2EStack } from "./stack.ts";

/**
 * The issue's size: 10,000 inputs (ten add-runs chunks, seed 7 failing three add-runs calls in
 * between). Measured on the 2-core machine with nothing else running: 97 s for the test, 115 s with
 * the stack (main 9959854, after stale queue messages stopped pushing a row's work to the back).
 * Before that fix, under a load of ~17, it did not finish in 15 min. E2E_BATCH_INPUTS sets a smaller
 * size for a quick local run.
 */
const INPUTS = Number(process.env.E2E_BATCH_INPUTS ?? 10_000);
/** Parallel's add-runs takes up to 1,000 inputs a call. */
const CHUNKS = Math.ceil(INPUTS / 1_000);
const ADD_RUNS = "POST /v1/tasks/groups/{id}/runs";
const GROUP_RUNS = "GET /v1/tasks/groups/{id}/runs";
const RESULT = "GET /v1/tasks/runs/{id}/result";
/** What the simulator injects or a client retries: any other status would be a relay bug. */
const FAULT_STATUSES = ["429", "500", "502", "503"];

interface BatchView {
  id: string;
  status: string;
  counts: Record<string, number>;
  taskgroup_id: string | null;
}

interface BatchRunView {
  id: string;
  status: string;
  batch_id: string | null;
  batch_index: number | null;
  result_available: boolean;
}

interface ExportLine {
  index: number;
  run_id: string;
  status: string;
  input: string;
  output: { type: string; content: { answer?: unknown } } | null;
  citations: string[] | null;
  error: unknown;
}

interface BatchCompletedBody {
  type: string;
  data: { batch: { id: string; status: string; counts: Record<string, number> }; results_url: unknown };
}

describe("a batch under faults", () => {
  let e2e: E2EStack;
  beforeAll(async () => {
    e2e = await startE2EStack({
      timeScale: 0.001,
      // As faults.test.ts (the Paid plan's budget, a run deadline the local queue's backlog cannot reach),
      // but 10 rows a job a tick: wrangler dev's local queue runs one batch of 4 messages at a time, and
      // 100 per-run polls a tick put the batch's own messages (the next chunk, the bulk results read)
      // minutes behind them, where a message older than its dispatch lease (30 s) finds its row
      // claimed again and does nothing.
      relayVars: { SWEEP_BATCH_SIZE: "10", SUBREQUEST_BUDGET: "1000", RUN_EXPIRY_MARGIN_SECONDS: "100000" },
    });
  }, 120_000);
  afterAll(async () => e2e?.stop());

  it(`loses nothing across ${INPUTS} inputs`, async () => {
    await e2e.simConfig({
      drop_webhooks: 0.3,
      duplicate_webhooks: 0.2,
      delay_webhooks: 0.1,
      webhook_delay_ms: 3_000,
      error_rate_by_endpoint: {
        "POST /v1/tasks/groups": 0.3,
        [ADD_RUNS]: 0.3,
        [GROUP_RUNS]: 0.2,
        "GET /v1/tasks/runs/{id}": 0.1,
        [RESULT]: 0.1,
      },
      throttle_rate: 0.05,
      fail_runs: 0.02,
    });
    e2e.receiver.setFailFirstAttempts(2);

    const auth = { authorization: `Bearer ${e2e.key.key}` };
    const inputs = Array.from({ length: INPUTS }, (_, i) => ({
      input: `Question ${i}: what is ${i} squared?`,
      metadata: { row: i },
    }));
    const created = await fetch(`${e2e.stack.relayUrl}/v1/batches`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json", "idempotency-key": "batch-faults" },
      body: JSON.stringify({
        name: "e2e-faults",
        template: {
          processor: "lite",
          task_spec: {
            output_schema: {
              type: "json",
              json_schema: {
                type: "object",
                properties: { answer: { type: "string" } },
                required: ["answer"],
                additionalProperties: false,
              },
            },
          },
        },
        inputs,
        callback: { url: e2e.receiver.url, per_run: false },
      }),
    });
    const createdText = await created.text();
    expect(created.status, createdText).toBe(202);
    const batchId = (JSON.parse(createdText) as BatchView).id;
    const startedAt = Date.now();

    // The batch's counts read every run of it: look every 2 s, tick the scheduler meanwhile.
    let batch: BatchView | null = null;
    let lookedAt = 0;
    const progress: Array<{ s: number; status: string; completed: number }> = [];
    const batchCompleted = () =>
      e2e.receiver.deliveries.some(
        (d) => d.accepted && (d.body as unknown as BatchCompletedBody | null)?.type === "batch.completed",
      );
    await e2e.driveUntil(async () => {
      if (Date.now() - lookedAt < 2_000) return false;
      lookedAt = Date.now();
      batch = await e2e.get<BatchView>(`/v1/batches/${batchId}`);
      progress.push({
        s: Math.round((lookedAt - startedAt) / 1000),
        status: batch.status,
        completed: batch.counts.completed ?? 0,
      });
      return batch.status === "completed" && batchCompleted();
    }, 900_000);
    const seconds = (Date.now() - startedAt) / 1000;

    batch = await e2e.get<BatchView>(`/v1/batches/${batchId}`);
    const stats = await e2e.simStats();
    // The figures, shown when it fails (and kept with the children's output under E2E_OUTPUT_FILE).
    const summary = JSON.stringify({
      inputs: INPUTS,
      seconds,
      progress: progress.filter((_, i) => i % 10 === 0),
      counts: batch.counts,
      endpoints: stats.endpoints,
      statuses: stats.statuses,
      webhooks: stats.webhooks,
      runs: stats.runs,
    });
    console.log(summary);
    if (process.env.E2E_OUTPUT_FILE) appendFileSync(process.env.E2E_OUTPUT_FILE, `[test] ${summary}\n`);
    expect(batch.status).toBe("completed");
    expect(batch.counts.total).toBe(INPUTS);
    expect((batch.counts.completed ?? 0) + (batch.counts.failed ?? 0)).toBe(INPUTS);

    // One run per input, every one finished; completed ones hold their output.
    const runs: BatchRunView[] = [];
    let cursor: string | null = null;
    do {
      const page: { data: BatchRunView[]; next_cursor: string | null } = await e2e.get(
        `/v1/runs?batch_id=${batchId}&limit=100${cursor ? `&cursor=${cursor}` : ""}`,
      );
      runs.push(...page.data);
      cursor = page.next_cursor;
    } while (cursor);
    expect(runs).toHaveLength(INPUTS);
    expect(new Set(runs.map((r) => r.id)).size).toBe(INPUTS);
    const byIndex = new Map(runs.map((r) => [r.batch_index, r]));
    expect([...byIndex.keys()].sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual(
      Array.from({ length: INPUTS }, (_, i) => i),
    );
    expect(runs.filter((r) => !isTerminal(r.status) || r.batch_id !== batchId)).toEqual([]);
    expect(runs.filter((r) => !["completed", "failed"].includes(r.status))).toEqual([]);
    const completed = runs.filter((r) => r.status === "completed");
    expect(completed.filter((r) => !r.result_available)).toEqual([]);
    expect(completed.length).toBe(batch.counts.completed);

    // Created once at Parallel, in add-runs calls: no single create, one accepted call per chunk,
    // every other add-runs call a fault the simulator injected. Results came in bulk (the runs stream):
    // a /result is the fallback for a run the stream did not bring.
    expect(stats.runs.created).toBe(INPUTS);
    expect(stats.endpoints["POST /v1/tasks/runs"]).toBe(0);
    expect(stats.statuses[ADD_RUNS]?.["200"]).toBe(CHUNKS);
    expect(
      Object.keys(stats.statuses[ADD_RUNS] ?? {}).filter((s) => s !== "200" && !FAULT_STATUSES.includes(s)),
    ).toEqual([]);
    expect(stats.endpoints[RESULT]).toBeLessThanOrEqual(Math.ceil(INPUTS / 20));
    expect(stats.webhooks.dropped).toBeGreaterThan(0);
    expect(stats.webhooks.duplicated).toBeGreaterThan(0);
    expect(
      (stats.statuses[ADD_RUNS]?.["500"] ?? 0) +
        (stats.statuses[ADD_RUNS]?.["502"] ?? 0) +
        (stats.statuses[ADD_RUNS]?.["503"] ?? 0) +
        (stats.statuses[GROUP_RUNS]?.["500"] ?? 0) +
        (stats.statuses[GROUP_RUNS]?.["502"] ?? 0) +
        (stats.statuses[GROUP_RUNS]?.["503"] ?? 0),
    ).toBeGreaterThan(0);

    // Exactly one batch.completed, taken once (the receiver failed its first two attempts), signed
    // (the receiver verifies with standardwebhooks), with the final counts; no per-run callback.
    expect(e2e.receiver.deliveries.filter((d) => !d.verified)).toEqual([]);
    const bodies = e2e.receiver.deliveries.map((d) => d.body as unknown as BatchCompletedBody);
    expect(new Set(bodies.map((b) => b.type))).toEqual(new Set(["batch.completed"]));
    const taken = e2e.receiver.deliveries.filter((d) => d.accepted);
    expect(taken).toHaveLength(1);
    expect(new Set(e2e.receiver.deliveries.map((d) => d.webhookId)).size).toBe(1);
    const callback = taken[0]?.body as unknown as BatchCompletedBody;
    expect(callback.data.batch).toMatchObject({ id: batchId, status: "completed" });
    // The callback lists the statuses present (GET /v1/batches/:id lists every one, 0 when none).
    const present = Object.fromEntries(Object.entries(batch.counts).filter(([, n]) => n > 0));
    expect(callback.data.batch.counts).toEqual(present);

    // JSONL: one line per input in input order, each with its run, input and output (or error).
    const jsonl = await fetch(`${e2e.stack.relayUrl}/v1/batches/${batchId}/results?format=jsonl`, {
      headers: auth,
    });
    expect(jsonl.status).toBe(200);
    const lines = (await jsonl.text()).split("\n").filter((line) => line !== "");
    expect(lines).toHaveLength(INPUTS);
    const wrong = lines
      .map((line) => JSON.parse(line) as ExportLine)
      .filter((line, i) => {
        const run = byIndex.get(i);
        if (!run) return true;
        const whole =
          line.status === "completed"
            ? typeof line.output?.content?.answer === "string" && line.error === null
            : line.status === "failed" && line.output === null && line.error !== null;
        return !(
          line.index === i &&
          line.run_id === run.id &&
          line.status === run.status &&
          line.input === `Question ${i}: what is ${i} squared?` &&
          whole
        );
      });
    expect(wrong.slice(0, 5)).toEqual([]);

    // CSV: a header and one record per input, in input order, with the output's field as a column.
    const csv = await fetch(`${e2e.stack.relayUrl}/v1/batches/${batchId}/results?format=csv`, {
      headers: auth,
    });
    expect(csv.status).toBe(200);
    const records = parse(await csv.text(), { bom: true, relax_column_count: false }) as string[][];
    expect(records).toHaveLength(INPUTS + 1);
    expect(records[0]).toEqual(["index", "run_id", "status", "input", "answer", "citations", "error"]);
    const wrongCsv = records.slice(1).filter((record, i) => {
      const run = byIndex.get(i);
      if (!run) return true;
      return !(
        record[0] === String(i) &&
        record[1] === run.id &&
        record[2] === run.status &&
        (run.status !== "completed" || (record[4] ?? "") !== "")
      );
    });
    expect(wrongCsv.slice(0, 5)).toEqual([]);

    expect(e2e.statuses.filter((s) => s >= 500)).toEqual([]);
  }, 1_200_000);
});
