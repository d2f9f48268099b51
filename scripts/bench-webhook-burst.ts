// A burst of Parallel webhooks at the relay under `wrangler dev` (local D1), on loopback:
//   npm exec -- node scripts/bench-webhook-burst.ts
// A batch of BURST_WEBHOOKS (default 3,000, at most 10,000) `lite` inputs is submitted to the
// simulator, whose runs are held (they never end on their own). Then one signed `completed` webhook
// per run — what Parallel would send when they all end together — is fired at /webhooks/parallel
// with BURST_CONCURRENCY in flight (default: all of them at once), while /healthz is asked every
// 250 ms, one at a time. Reported: the webhooks' answer times (p50/p99/max, from the sender), their
// statuses, the /healthz answer times during the burst, and the relay's own D1 cost per webhook
// (its canonical log lines). Bounded in count and in time (BURST_MAX_S, default 300 s, every request
// aborted at 60 s). Kept apart from scripts/bench.ts part 7, which measures the batch end to end
// through the simulator's (bounded) webhook sender; this fires the burst with no sender in between.
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import { join } from "node:path";
import { closedLoop, percentile, sleep, waitFor } from "./bench/load.ts";
import { BENCH_WEBHOOK_SECRET, signedParallelWebhook } from "./bench/webhooks.ts";
import { createApiKey, freePort, startLocalStack } from "./local-stack.ts";

const COUNT = Math.min(10_000, Number(process.env.BURST_WEBHOOKS ?? 3_000));
const CONCURRENCY = Math.min(COUNT, Number(process.env.BURST_CONCURRENCY ?? COUNT));
const MAX_MS = Number(process.env.BURST_MAX_S ?? 300) * 1000;
const REQUEST_TIMEOUT_MS = 60_000;
const ADMIN_TOKEN = "bench-admin-token";
const TIME_SCALE = 0.1;

interface RequestLine {
  event: string;
  path?: string;
  status?: number;
  latency_ms?: number;
  d1_queries?: number;
  d1_rows_written?: number;
  d1_rows_read?: number;
}

const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;
const spread = (values: number[]) => ({
  count: values.length,
  p50_ms: round(percentile(values, 50)),
  p99_ms: round(percentile(values, 99)),
  max_ms: round(Math.max(...values)),
});

async function main() {
  process.env.X_LOCAL_OBSERVABILITY = "false";
  const persistDir = await mkdtemp(join(os.tmpdir(), "taskrelay-bench-burst-"));
  const lines: RequestLine[] = [];
  const stack = await startLocalStack({
    port: await freePort(),
    simPort: await freePort(),
    adminToken: ADMIN_TOKEN,
    webhookSecret: BENCH_WEBHOOK_SECRET,
    timeScale: TIME_SCALE,
    persistDir,
    // The runs are held at the simulator: the only completions are the ones this script sends.
    simEnv: { SIM_SEED: "42", SIM_RUN_DURATION_MS: String(2_000_000_000) },
    relayVars: { SUBREQUEST_BUDGET: "1000", PARALLEL_CREATE_LIMIT_PER_MINUTE: "10000000" },
    onOutput: (line) => {
      if (!line.includes('"http.request"')) return;
      try {
        lines.push(JSON.parse(line.slice(line.indexOf("{"))) as RequestLine);
      } catch {
        // not a log line
      }
    },
  });
  const deadline = Date.now() + MAX_MS;
  let ticking = true;
  const ticker = (async () => {
    while (ticking) {
      await stack.tick().catch(() => undefined);
      await sleep(60_000 * TIME_SCALE);
    }
  })();
  try {
    const key = await createApiKey(stack.relayUrl, ADMIN_TOKEN, "bench-burst");
    const auth = { authorization: `Bearer ${key.key}`, "content-type": "application/json" };
    const simUrl = stack.simUrl as string;
    console.log(`submitting a batch of ${COUNT} lite inputs…`);
    const created = await fetch(`${stack.relayUrl}/v1/batches`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({
        name: "burst",
        template: { processor: "lite", task_spec: { output_schema: "The answer" } },
        inputs: Array.from({ length: COUNT }, (_, i) => ({ input: `Burst ${i}` })),
      }),
    });
    const batch = (await created.json()) as { id: string };
    if (created.status !== 202) throw new Error(`batch create answered ${created.status}`);
    // Every input at the simulator and its id stored by the relay (no run left `submitting`).
    await waitFor(
      async () => {
        const b = (await (
          await fetch(`${stack.relayUrl}/v1/batches/${batch.id}`, { headers: auth })
        ).json()) as {
          counts: Record<string, number>;
        };
        return (b.counts.queued ?? 0) + (b.counts.running ?? 0) === COUNT;
      },
      Math.max(1_000, deadline - Date.now()),
      `the batch's ${COUNT} runs at the simulator`,
      1_000,
    );
    const views = (
      (await (await fetch(`${simUrl}/_sim/runs?limit=${COUNT}`)).json()) as {
        runs: Array<{ run: Record<string, unknown> }>;
      }
    ).runs;
    const now = new Date().toISOString();
    const webhooks = views.map(({ run }, i) => {
      const body = JSON.stringify({
        timestamp: now,
        type: "task_run.status",
        data: { ...run, status: "completed", is_active: false, modified_at: now },
      });
      const id = `whevent_burst${i}`;
      return signedParallelWebhook(id, body);
    });

    // /healthz one at a time through the burst: a stalled relay shows as one long answer.
    const health: number[] = [];
    let healthFailures = 0;
    let probing = true;
    const prober = (async () => {
      while (probing) {
        const started = performance.now();
        try {
          const r = await fetch(`${stack.relayUrl}/healthz`, {
            signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
          });
          await r.arrayBuffer();
          if (!r.ok) healthFailures++;
        } catch {
          healthFailures++;
        }
        health.push(performance.now() - started);
        await sleep(250);
      }
    })();
    await sleep(1_000);
    const mark = lines.length;
    const answers: number[] = [];
    console.log(`firing ${webhooks.length} webhooks, ${CONCURRENCY} in flight…`);
    const load = await closedLoop(webhooks.length, CONCURRENCY, async (i) => {
      const started = performance.now();
      try {
        return await fetch(`${stack.relayUrl}/webhooks/parallel`, {
          method: "POST",
          ...webhooks[i],
          signal: AbortSignal.timeout(Math.min(REQUEST_TIMEOUT_MS, Math.max(1, deadline - Date.now()))),
        });
      } finally {
        answers.push(performance.now() - started);
      }
    });
    await sleep(1_000);
    probing = false;
    await prober;
    const hooks = lines.slice(mark).filter((l) => l.path === "/webhooks/parallel");
    const per = (field: "d1_queries" | "d1_rows_written" | "d1_rows_read") =>
      round(hooks.reduce((n, l) => n + (l[field] ?? 0), 0) / Math.max(1, hooks.length), 2);
    const result = {
      date: new Date().toISOString(),
      load_average: os.loadavg().map((n) => round(n, 1)),
      webhooks: webhooks.length,
      concurrency: CONCURRENCY,
      burst_seconds: round(load.elapsedMs / 1000, 1),
      per_second: round(load.perSecond, 0),
      statuses: load.statuses,
      answer_time: spread(answers),
      relay_latency: spread(hooks.map((l) => l.latency_ms ?? 0)),
      relay_d1_per_webhook: {
        queries: per("d1_queries"),
        rows_written: per("d1_rows_written"),
        rows_read: per("d1_rows_read"),
      },
      healthz: { ...spread(health), failed: healthFailures },
    };
    console.log(JSON.stringify(result, null, 2));
  } finally {
    ticking = false;
    await ticker;
    await stack.stop();
    await rm(persistDir, { recursive: true, force: true });
  }
}

await main();
