// `npm run bench`: the numbers behind "nothing lost, results fast, fewest Parallel calls", measured
// side by side in one run on the local stack (simulator + relay under wrangler dev on local D1).
//   1. Parallel API calls per completed run: webhook path, missed-webhook path, and a baseline
//      client that creates with the parallel-web SDK and polls every 2 s (Parallel's TS example).
//   2. Completion-to-callback latency p50/p95/p99 at a steady 30 completions/s, against the
//      baseline's completion-to-result-in-hand latency.
//   3. Sustained create rate and webhook ingestion rate, against a bare Hono Worker on the same workerd.
//   4. D1 rows read and written per run, and per sweep tick with 10,000 and 100,000 finished runs.
//   5. Peak memory of completing a run with a 50 MB output (three on a relay that has done nothing
//      yet, one after the rest), of GET /v1/runs?limit=100 over 100 runs with 1 MB outputs (in R2, and stored
//      inline as rows from before migration 0011 hold them), and of GET /result for a 50 MB output.
//   6. Recovery at the Free plan's budget (a stack of its own, SUBREQUEST_BUDGET 50, a tick every 2 s):
//      1,000 runs whose webhooks were all dropped, and 1,000 deliveries owed to a receiver that was down;
//      then both at once (mixed): does either backlog wait behind the other?
//   8. Create fairness under the create limiter (a stack of its own at 300 creates a minute,
//      bench/create-fairness.ts): one key's burst far over the limit, another's single runs at 1/s.
//   9. D1 rows read by the dashboard's overview (/dashboard, 24 hours and 7 days) with 10,000
//      and 100,000 runs stored; and by GET /v1/usage over 30 days × 10,000 runs a day, with rows written
//      per accepted run by the usage rollup (scripts/bench/usage.ts).

//   7. 10,000 lite inputs (JSON output) as one batch against the same as single runs: Parallel calls,
//      Parallel 429s, seconds from the request to the last result stored, D1 rows written per input.
// Prints a table, writes bench-results.json. Loopback only; every load is bounded in count.
import { readdirSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import { join } from "node:path";
import Parallel from "parallel-web";
import { type GroupCpu, groupCpuMs, ownCpuMs, totalCpuMs } from "./bench/cpu.ts";
import { type CreateFairness, createFairnessPart } from "./bench/create-fairness.ts";
import { closedLoop, type LoadResult, percentile, sleep, steadyRate, waitFor } from "./bench/load.ts";
import {
  type HeapPeak,
  heapPeaksOf,
  InspectorSession,
  inspectorTargets,
  type PeakMemory,
  peakMemoryOf,
  workerPid,
} from "./bench/memory.ts";
import { type UsageBench, usagePart } from "./bench/usage.ts";
import { BENCH_WEBHOOK_SECRET, signedParallelWebhook } from "./bench/webhooks.ts";
import { startCallbackReceiver } from "./callback-receiver.ts";
import {
  createApiKey,
  executeLocalSql,
  freePort,
  loadSqlite,
  ROOT,
  startLocalStack,
  startWranglerDev,
} from "./local-stack.ts";

const TIME_SCALE = 0.1; // a `base` run (15–100 s at Parallel) takes 1.5–10 s here
const CALL_RUNS = Number(process.env.BENCH_CALL_RUNS ?? 100);
const LATENCY_RUNS = Number(process.env.BENCH_LATENCY_RUNS ?? 600);
const LATENCY_RATE = 30; // completions per second: Parallel's default 2,000 creates a minute
const THROUGHPUT_REQUESTS = Number(process.env.BENCH_THROUGHPUT_REQUESTS ?? 1000);
const CONCURRENCY = 16;
/** Part 9 (overview): runs stored in each step, spread over the last 30 days (720 hours). */
const OVERVIEW_STEPS = [10_000, 100_000];

/** Which parts to run, e.g. BENCH_PARTS=2 while working on latency; all by default. */
const PARTS = new Set((process.env.BENCH_PARTS ?? "1,2,3,4,5,6,7,8,9").split(","));
/** Part 7: inputs in the batch, and as single runs side by side. */
const BATCH_INPUTS = Number(process.env.BENCH_BATCH_INPUTS ?? 10_000);
const BATCH_SINGLE_RUNS = Number(process.env.BENCH_BATCH_SINGLE_RUNS ?? BATCH_INPUTS);
/** Part 7 stops waiting for results after this long and reports what was stored. */
const BATCH_MAX_MS = Number(process.env.BENCH_BATCH_MAX_S ?? 900) * 1000;
const MEMORY_RUNS = 100;
const MEMORY_OUTPUT_BYTES = 1_000_000;
const RECOVERY_ITEMS = Number(process.env.BENCH_RECOVERY_ITEMS ?? 1000);
/** Part 6 stops waiting after this long and reports what it recovered (the old design needs ~17 min). */
const RECOVERY_MAX_MS = Number(process.env.BENCH_RECOVERY_MAX_S ?? 300) * 1000;
const RECOVERY_TICK_MS = 2_000;
/** D1 rows written per completed run with one delivery, issue 13's target (Free plan: 100,000 a day). */
const ROWS_WRITTEN_TARGET = 20;
const ADMIN_TOKEN = "bench-admin-token";

interface LogEvent {
  event: string;
  method?: string;
  path?: string;
  job?: string;
  d1_queries?: number;
  d1_rows_read?: number;
  d1_rows_written?: number;
}

const relayEvents: LogEvent[] = [];
/** Off while throughput is measured: the load generator should do nothing else then. */
let collecting = true;
function collect(line: string) {
  const json = collecting && line.startsWith("[relay] {") ? line.slice("[relay] ".length) : null;
  if (!json) return;
  try {
    relayEvents.push(JSON.parse(json) as LogEvent);
  } catch {
    // not a log line of ours
  }
}

function d1Since(mark: number, runs: number) {
  // The queue consumer (queue.batch) does the background work the cron tick hands out: polls, fetches, retries.
  const events = relayEvents
    .slice(mark)
    .filter((e) => ["http.request", "cron.tick", "queue.batch"].includes(e.event));
  const sum = (field: "d1_rows_read" | "d1_rows_written" | "d1_queries") =>
    events.reduce((s, e) => s + (e[field] ?? 0), 0);
  return {
    rows_read_per_run: round(sum("d1_rows_read") / runs),
    rows_written_per_run: round(sum("d1_rows_written") / runs),
    queries_per_run: round(sum("d1_queries") / runs),
  };
}

const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;

async function main() {
  const results: Record<string, unknown> = {};
  if ([...PARTS].some((part) => ["1", "2", "3", "4", "5", "7", "9"].includes(part)))
    await stackParts(results);
  if (PARTS.has("6")) results.recovery = await recoveryPart();
  if (PARTS.has("8")) {
    results.create_fairness = await createFairnessPart({
      adminToken: ADMIN_TOKEN,
      webhookSecret: BENCH_WEBHOOK_SECRET,
      timeScale: TIME_SCALE,
    });
  }
  if (PARTS.has("9")) results.overview = await overviewPart();
  const cpus = os.cpus();
  const output = {
    date: new Date().toISOString(),
    machine: {
      cpu: cpus[0]?.model ?? "unknown",
      cores: cpus.length,
      memory_gb: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
      platform: `${os.platform()} ${os.release()}`,
    },
    time_scale: TIME_SCALE,
    ...results,
  };
  await writeFile(join(ROOT, "bench-results.json"), `${JSON.stringify(output, null, 2)}\n`);
  printTable(output as BenchOutput);
}

/** Parts 1–5, on one stack with the Paid plan's budget. */
async function stackParts(results: Record<string, unknown>) {
  // wrangler dev streams every invocation of a Worker, each D1 call, fetch and log line of it, to a
  // local trace store (its Local Explorer). A deployed Worker pays nothing of the kind, and here it
  // cost the relay ~1.2 ms of workerd CPU per webhook: off for both Workers measured, the relay and
  // the bare one. (`npm start` leaves wrangler's default.)
  process.env.X_LOCAL_OBSERVABILITY = "false";
  const persistDir = await mkdtemp(join(os.tmpdir(), "taskrelay-bench-"));
  const stack = await startLocalStack({
    port: await freePort(),
    simPort: await freePort(),
    adminToken: ADMIN_TOKEN,
    webhookSecret: BENCH_WEBHOOK_SECRET,
    timeScale: TIME_SCALE,
    persistDir,
    simEnv: { SIM_SEED: "42" },
    // The Paid plan's budget, not the Free plan's 50 calls a tick: sweep 100 overdue runs in a tick or two.
    // Parts 1–5 measure the relay, not the create limit (part 3 lifts the simulator's too; part 8
    // measures the limit): the limiter is still asked on every create.
    relayVars: {
      SWEEP_BATCH_SIZE: "50",
      SUBREQUEST_BUDGET: "1000",
      PARALLEL_CREATE_LIMIT_PER_MINUTE: "10000000",
    },
    onOutput: collect,
  });
  const bare = await startWranglerDev(join(ROOT, "scripts", "bench", "bare-worker.toml"), await freePort());
  const key = await createApiKey(stack.relayUrl, ADMIN_TOKEN, "bench");
  const receiver = await startCallbackReceiver({ secrets: [key.signing_secret] });
  const simUrl = stack.simUrl as string;
  const auth = { authorization: `Bearer ${key.key}`, "content-type": "application/json" };

  const sim = {
    config: async (patch: Record<string, unknown>) => {
      const r = await fetch(`${simUrl}/_sim/config`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(patch),
      });
      if (!r.ok) throw new Error(`sim config: ${await r.text()}`);
    },
    reset: () => fetch(`${simUrl}/_sim/reset`, { method: "POST" }).then((r) => r.text()),
    stats: async () =>
      (await (await fetch(`${simUrl}/_sim/stats`)).json()) as {
        endpoints: Record<string, number>;
        runs: { created: number; completed: number; queued: number; running: number };
      },
    runs: async () =>
      (
        (await (await fetch(`${simUrl}/_sim/runs?limit=100000`)).json()) as {
          runs: Array<{
            run: { run_id: string; status: string } & Record<string, unknown>;
            completed_at_ms: number | null;
          }>;
        }
      ).runs,
  };
  const createRun = async (body: Record<string, unknown>) => {
    const response = await fetch(`${stack.relayUrl}/v1/runs`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify(body),
    });
    const run = (await response.json()) as { id: string; parallel_run_id: string | null };
    if (response.status !== 202)
      throw new Error(`create answered ${response.status}: ${JSON.stringify(run)}`);
    return run;
  };
  const totalCalls = (endpoints: Record<string, number>) =>
    Object.values(endpoints).reduce((a, b) => a + b, 0);
  const deliveredRuns = () => new Set([...receiver.accepted().values()].map((d) => d.body?.data.run.id));

  // Keeps the cron handler firing as the launcher does (every simulated minute).
  let ticking = true;
  const ticker = (async () => {
    while (ticking) {
      await stack.tick().catch(() => undefined);
      await sleep(60_000 * TIME_SCALE);
    }
  })();

  const client = new Parallel({ apiKey: "sim-key", baseURL: simUrl, maxRetries: 0 });
  let runsStored = 0;
  try {
    // 1. Parallel calls per completed run.
    if (PARTS.has("1")) {
      console.log(`1/6 Parallel calls per run (${CALL_RUNS} base runs per path)…`);
      const callsFor = async (dropWebhooks: number) => {
        await sim.reset();
        await sim.config({ drop_webhooks: dropWebhooks });
        const mark = relayEvents.length;
        const ids = new Set<string>();
        await closedLoop(CALL_RUNS, 8, async (i) => {
          const run = await createRun({
            processor: "base",
            input: `Calls ${dropWebhooks} ${i}`,
            callback: { url: receiver.url },
          });
          ids.add(run.id);
          return new Response(null, { status: 202 });
        });
        await waitFor(
          async () => [...ids].every((id) => deliveredRuns().has(id)),
          180_000,
          "every run delivered",
        );
        await sleep(500);
        const stats = await sim.stats();
        return {
          calls_per_run: round(totalCalls(stats.endpoints) / stats.runs.completed),
          endpoints: stats.endpoints,
          d1: d1Since(mark, CALL_RUNS),
        };
      };
      const webhookPath = await callsFor(0);
      const missedPath = await callsFor(1);

      await sim.reset();
      await sim.config({ drop_webhooks: 0 });
      const pollEveryMs = 2_000 * TIME_SCALE; // 2 s of simulated time, like the runs themselves
      await closedLoop(CALL_RUNS, 8, async (i) => {
        const run = await client.taskRun.create({ processor: "base", input: `Baseline ${i}` });
        for (;;) {
          await sleep(pollEveryMs);
          if (!(await client.taskRun.retrieve(run.run_id)).is_active) break;
        }
        await client.taskRun.result(run.run_id, { timeout: 25 });
        return new Response(null, { status: 200 });
      });
      const baselineStats = await sim.stats();
      const baselineCalls = round(totalCalls(baselineStats.endpoints) / baselineStats.runs.completed);
      results.calls_per_run = {
        relay_webhook_path: webhookPath.calls_per_run,
        relay_missed_webhook_path: missedPath.calls_per_run,
        baseline_sdk_polling_every_2s: baselineCalls,
        baseline_over_relay: round(baselineCalls / webhookPath.calls_per_run, 1),
        endpoints: {
          webhook_path: webhookPath.endpoints,
          missed_webhook_path: missedPath.endpoints,
          baseline: baselineStats.endpoints,
        },
      };
      results.d1_per_run = { webhook_path: webhookPath.d1, missed_webhook_path: missedPath.d1 };
      runsStored += CALL_RUNS * 2;
    }

    // 2. Completion-to-callback latency at a steady 30 completions per second.
    if (PARTS.has("2")) {
      console.log(`2/6 completion-to-callback latency (${LATENCY_RUNS} lite runs at ${LATENCY_RATE}/s)…`);
      await sim.reset();
      const parallelIdOf = new Map<string, string>();
      await steadyRate(LATENCY_RUNS, LATENCY_RATE, async (i) => {
        const run = await createRun({
          processor: "lite",
          input: `Latency ${i}`,
          callback: { url: receiver.url },
        });
        if (run.parallel_run_id) parallelIdOf.set(run.id, run.parallel_run_id);
      });
      await waitFor(
        async () => [...parallelIdOf.keys()].every((id) => deliveredRuns().has(id)),
        120_000,
        "every latency run delivered",
      );
      const completedAt = new Map((await sim.runs()).map((r) => [r.run.run_id, r.completed_at_ms]));
      const relayLatencies: number[] = [];
      for (const delivery of receiver.accepted().values()) {
        const parallelId = parallelIdOf.get(delivery.body?.data.run.id ?? "");
        const completed = parallelId ? completedAt.get(parallelId) : null;
        if (completed) relayLatencies.push(delivery.receivedAtMs - completed);
      }

      await sim.reset();
      const inHandAt = new Map<string, number>();
      await steadyRate(LATENCY_RUNS, LATENCY_RATE, async (i) => {
        const run = await client.taskRun.create({ processor: "lite", input: `Baseline latency ${i}` });
        for (;;) {
          await sleep(2_000); // Parallel's TypeScript example: poll every 2 s
          if (!(await client.taskRun.retrieve(run.run_id)).is_active) break;
        }
        await client.taskRun.result(run.run_id, { timeout: 25 });
        inHandAt.set(run.run_id, Date.now());
      });
      const baselineCompletedAt = new Map((await sim.runs()).map((r) => [r.run.run_id, r.completed_at_ms]));
      const baselineLatencies = [...inHandAt].flatMap(([id, inHand]) => {
        const completed = baselineCompletedAt.get(id);
        return completed ? [inHand - completed] : [];
      });
      const summary = (values: number[]) => ({
        samples: values.length,
        p50_ms: Math.round(percentile(values, 50)),
        p95_ms: Math.round(percentile(values, 95)),
        p99_ms: Math.round(percentile(values, 99)),
      });
      results.completion_to_callback = {
        completions_per_second: LATENCY_RATE,
        relay: summary(relayLatencies),
        baseline_poll_2s: summary(baselineLatencies),
      };

      runsStored += LATENCY_RUNS;
    }

    // 3. Sustained create and webhook ingestion rates against a bare Worker.
    if (PARTS.has("3")) {
      console.log(
        `3/6 create and webhook ingestion rates (${THROUGHPUT_REQUESTS} requests each, ${CONCURRENCY} in flight)…`,
      );
      ticking = false;
      collecting = false;
      await sim.reset();
      await sim.config({ drop_webhooks: 1, rate_limit_per_minute: 10_000_000 });
      const created: Array<{ id: string; parallel_run_id: string }> = [];
      const createBody = (i: number) => JSON.stringify({ processor: "lite", input: `Throughput ${i}` });
      const groups = stack.processGroups();
      const relayGroup = groups.relay as number;
      const bareGroup = bare.processGroup as number;
      const cpu = (group: number) => cpuPerRequest(group, groups.sim);
      const relayCreates = await cpu(relayGroup)(() =>
        closedLoop(THROUGHPUT_REQUESTS, CONCURRENCY, async (i) => {
          const response = await fetch(`${stack.relayUrl}/v1/runs`, {
            method: "POST",
            headers: auth,
            body: createBody(i),
          });
          const run = (await response.clone().json()) as { id: string; parallel_run_id: string };
          if (response.ok) created.push(run);
          return response;
        }),
      );
      const bareCreates = await cpu(bareGroup)(() =>
        closedLoop(THROUGHPUT_REQUESTS, CONCURRENCY, (i) =>
          fetch(`${bare.url}/v1/runs`, { method: "POST", headers: auth, body: createBody(i) }),
        ),
      );
      await waitFor(
        async () => {
          const s = await sim.stats();
          return s.runs.queued + s.runs.running === 0;
        },
        60_000,
        "the simulator finishing the throughput runs",
      );
      const taskRuns = new Map((await sim.runs()).map((r) => [r.run.run_id, r.run]));
      const webhooks = created.map((run, i) => {
        const body = JSON.stringify({
          timestamp: new Date().toISOString(),
          type: "task_run.status",
          data: taskRuns.get(run.parallel_run_id),
        });
        const id = `whevent_bench${i}`;
        return signedParallelWebhook(id, body);
      });
      const relayIngest = await cpu(relayGroup)(() =>
        closedLoop(webhooks.length, CONCURRENCY, (i) =>
          fetch(`${stack.relayUrl}/webhooks/parallel`, { method: "POST", ...webhooks[i] }),
        ),
      );
      const bareIngest = await cpu(bareGroup)(() =>
        closedLoop(webhooks.length, CONCURRENCY, (i) =>
          fetch(`${bare.url}/webhooks/parallel`, { method: "POST", ...webhooks[i] }),
        ),
      );
      results.throughput = {
        concurrency: CONCURRENCY,
        create: {
          relay_per_s: round(relayCreates.perSecond, 0),
          bare_worker_per_s: round(bareCreates.perSecond, 0),
          ratio: round(relayCreates.perSecond / bareCreates.perSecond),
          relay_statuses: relayCreates.statuses,
          cpu_ms_per_request: { relay: relayCreates.cpu, bare_worker: bareCreates.cpu },
        },
        webhook_ingestion: {
          relay_per_s: round(relayIngest.perSecond, 0),
          bare_worker_per_s: round(bareIngest.perSecond, 0),
          ratio: round(relayIngest.perSecond / bareIngest.perSecond),
          relay_statuses: relayIngest.statuses,
          cpu_ms_per_request: { relay: relayIngest.cpu, bare_worker: bareIngest.cpu },
        },
      };

      runsStored += created.length;
    }

    // 4. A sweep tick's D1 cost as finished runs pile up.
    if (PARTS.has("4")) {
      console.log("4/6 sweep tick cost with 10,000 and 100,000 finished runs…");
      collecting = true;
      await sleep(3_000); // let the ingested webhooks' result fetches settle
      const tickCost = async () => {
        await stack.tick();
        await stack.tick();
        await sleep(300);
        const tick = relayEvents.filter((e) => e.event === "cron.tick").at(-1);
        return {
          rows_read: tick?.d1_rows_read ?? Number.NaN,
          rows_written: tick?.d1_rows_written ?? Number.NaN,
          queries: tick?.d1_queries ?? Number.NaN,
        };
      };
      const loadFinished = (count: number, prefix: string) =>
        executeLocalSql(
          persistDir,
          `WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ${count})
         INSERT INTO runs (id, api_key_id, status, processor, input, created_at, updated_at, finished_at, result_stored_at, attempts)
         SELECT printf('run_bench${prefix}%08d', n), '${key.id}', 'completed', 'base', '"q"', '2026-01-01T00:00:00.000Z',
                '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', 0 FROM seq`,
        );
      const before = await tickCost();
      await loadFinished(10_000, "a");
      const at10k = await tickCost();
      await loadFinished(90_000, "b");
      const at100k = await tickCost();
      results.sweep_tick = {
        finished_runs_before: runsStored,
        before,
        at_10000_more: at10k,
        at_100000_more: at100k,
      };
    }
    if (PARTS.has("9")) {
      console.log("9 usage rows read over 30 days × 10,000 runs a day, rows written per accepted run…");
      collecting = true;
      let cursor = relayEvents.length;
      results.usage = await usagePart({
        relayUrl: stack.relayUrl,
        adminToken: ADMIN_TOKEN,
        persistDir,
        executeLocalSql,
        lastRequestCost: async (method, path) => {
          let found: LogEvent | undefined;
          await waitFor(
            async () => {
              const index = relayEvents.findIndex(
                (e, i) => i >= cursor && e.event === "http.request" && e.method === method && e.path === path,
              );
              if (index < 0) return false;
              found = relayEvents[index];
              cursor = index + 1;
              return true;
            },
            10_000,
            `the log line of ${method} ${path}`,
          );
          return {
            rows_read: found?.d1_rows_read ?? Number.NaN,
            rows_written: found?.d1_rows_written ?? Number.NaN,
            queries: found?.d1_queries ?? Number.NaN,
          };
        },
      });
    }
    if (PARTS.has("5")) {
      console.log(
        `5/6 peak memory of a list of ${MEMORY_RUNS} runs with 1 MB outputs, and of a 50 MB result…`,
      );
      await sim.reset();
      const pid = workerPid(stack.processGroups().relay as number);
      if (!pid) throw new Error("no workerd process found for the relay");
      const memoryKey = await createApiKey(stack.relayUrl, ADMIN_TOKEN, "bench-memory");
      const memoryAuth = { authorization: `Bearer ${memoryKey.key}`, "content-type": "application/json" };
      const get = async (path: string, headers: Record<string, string>) => {
        const response = await fetch(`${stack.relayUrl}${path}`, { headers });
        const text = await response.text();
        if (response.status !== 200)
          throw new Error(`GET ${path} answered ${response.status}: ${text.slice(0, 300)}`);
        return text;
      };
      const createSized = async (bytes: number, i: number) => {
        const response = await fetch(`${stack.relayUrl}/v1/runs`, {
          method: "POST",
          headers: memoryAuth,
          body: JSON.stringify({
            processor: "lite",
            input: `Memory ${bytes} ${i}`,
            task_spec: { output_schema: "A long report." },
            metadata: { sim_output_bytes: String(bytes) },
          }),
        });
        return new Response(await response.text(), { status: response.status });
      };
      const listed = async (headers: Record<string, string>) =>
        (
          JSON.parse(await get("/v1/runs?limit=100", headers)) as {
            data: Array<{ id: string; result_available: boolean }>;
          }
        ).data;
      // Completing a run with a 50 MB output (webhook, /result streamed into R2): the peak while it is
      // stored, on a relay that has done nothing yet, three times in a row (the first pays for every
      // heap and cache the process grows once; all three are reported).
      // The isolates' heaps too (the relay's is what Cloudflare's 128 MB applies to; local R2 and D1
      // run in isolates of their own in the same process, so RSS counts them as well).
      const targets = await inspectorTargets(stack.processGroups().relay as number);
      const sessions = new Map<string, InspectorSession>();
      for (const name of ["relay", "r2:bucket", "d1:db"]) {
        const url = targets.get(name);
        if (url) sessions.set(name, await InspectorSession.open(url));
      }
      if (!sessions.has("relay")) throw new Error("no inspector found for the relay's isolate");
      const heaps: Record<string, Record<string, HeapPeak>> = {};
      // The relay's live heap is measured after a full GC (slow: a heap snapshot); the others sampled.
      const RELAY_ONLY = new Set(["relay"]);
      const storeBig = async (i: number, name: string) => {
        let id = "";
        const peak = await peakMemoryOf(pid, async () => {
          heaps[name] = await heapPeaksOf(sessions, RELAY_ONLY, async () => {
            id = (JSON.parse(await (await createSized(50_000_000, i)).text()) as { id: string }).id;
            await waitFor(
              async () => (await listed(memoryAuth)).some((r) => r.id === id && r.result_available),
              300_000,
              "the 50 MB result stored",
            );
          });
        });
        return { id, peak };
      };
      const coldStores: PeakMemory[] = [];
      for (let i = 0; i < 3; i++) {
        await sleep(500);
        coldStores.push(
          (await storeBig(i, `completion_storing_50mb_output_cold_${["1st", "2nd", "3rd"][i]}`)).peak,
        );
      }
      await closedLoop(MEMORY_RUNS, 8, (i) => createSized(MEMORY_OUTPUT_BYTES, i));
      await waitFor(
        async () => (await listed(memoryAuth)).filter((r) => r.result_available).length >= MEMORY_RUNS,
        300_000,
        "every 1 MB result stored",
      );
      // The worst of three, the first included: a warm heap has room that hides what a request allocates.
      const peakOf = async (path: string, headers: Record<string, string>): Promise<PeakMemory> => {
        const samples: PeakMemory[] = [];
        for (let i = 0; i < 3; i++) {
          await sleep(500);
          samples.push(await peakMemoryOf(pid, () => get(path, headers).then(() => undefined)));
        }
        return samples.reduce((worst, m) => (m.peak_added_mb > worst.peak_added_mb ? m : worst));
      };
      const r2List = await peakOf("/v1/runs?limit=100", memoryAuth);

      // Rows as stored before migration 0011: the same 1 MB outputs inline in D1, under another key.
      const inlineKey = await createApiKey(stack.relayUrl, ADMIN_TOKEN, "bench-memory-inline");
      await executeLocalSql(
        persistDir,
        `WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ${MEMORY_RUNS})
         INSERT INTO runs (id, api_key_id, status, processor, input, output, created_at, updated_at, finished_at, result_stored_at, attempts)
         SELECT printf('run_benchmem%08d', n), '${inlineKey.id}', 'completed', 'lite', '"q"',
                '{"type":"text","content":"' || printf('%.*c', ${MEMORY_OUTPUT_BYTES - 40}, 'x') || '","basis":[]}',
                '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z',
                '2026-01-01T00:00:00.000Z', 0 FROM seq`,
      );
      const inlineAuth = { authorization: `Bearer ${inlineKey.key}` };
      const inlineList = await peakOf("/v1/runs?limit=100", inlineAuth);
      // For scale: the one request that does read a whole 1 MB inline output.
      const inlineOne = await peakOf("/v1/runs/run_benchmem00000001/result", inlineAuth);

      // As before this figure's first measurement (2026-12-02): after the 1 MB runs, one more.
      const { id: bigId, peak: bigStore } = await storeBig(3, "completion_storing_50mb_output");
      const bigResult = await peakOf(`/v1/runs/${bigId}/result`, {
        ...memoryAuth,
        "accept-encoding": "identity",
      });
      heaps.result_50mb_streamed_from_r2 = await heapPeaksOf(sessions, RELAY_ONLY, () =>
        get(`/v1/runs/${bigId}/result`, { ...memoryAuth, "accept-encoding": "identity" }).then(
          () => undefined,
        ),
      );
      for (const session of sessions.values()) session.close();
      results.isolate_heap = heaps;
      results.memory = {
        list_100_runs_1mb_outputs_in_r2: r2List,
        list_100_runs_1mb_outputs_inline_d1: inlineList,
        result_1mb_inline: inlineOne,
        result_50mb_streamed_from_r2: bigResult,
        completion_storing_50mb_output: bigStore,
        completion_storing_50mb_output_cold_1st: coldStores[0] as PeakMemory,
        completion_storing_50mb_output_cold_2nd: coldStores[1] as PeakMemory,
        completion_storing_50mb_output_cold_3rd: coldStores[2] as PeakMemory,
      };
    }

    // 7. A batch of lite inputs with a JSON output, against the same inputs as single runs.
    if (PARTS.has("7")) {
      console.log(`7/7 ${BATCH_INPUTS} inputs as one batch, then ${BATCH_SINGLE_RUNS} as single runs…`);
      const spec = {
        output_schema: {
          type: "json",
          json_schema: {
            type: "object",
            properties: { answer: { type: "string" } },
            required: ["answer"],
            additionalProperties: false,
          },
        },
      };
      const statsNow = async () => {
        const s = (await (await fetch(`${simUrl}/_sim/stats`)).json()) as {
          endpoints: Record<string, number>;
          statuses: Record<string, Record<string, number>>;
        };
        const throttled = Object.values(s.statuses).reduce((n, byStatus) => n + (byStatus["429"] ?? 0), 0);
        return { calls: totalCalls(s.endpoints), throttled, endpoints: s.endpoints };
      };
      // The runs' result_stored_at, read through the API a page at a time (reading wrangler's SQLite
      // file while the relay writes it can stall the relay's D1).
      const storedTimes = async (query: string, keep: (run: Record<string, unknown>) => boolean) => {
        const times: string[] = [];
        let cursor: string | null = null;
        do {
          const page = (await (
            await fetch(`${stack.relayUrl}/v1/runs?limit=100&${query}${cursor ? `&cursor=${cursor}` : ""}`, {
              headers: auth,
            })
          ).json()) as { data: Array<Record<string, unknown>>; next_cursor: string | null };
          for (const run of page.data)
            if (keep(run) && run.result_stored_at) times.push(String(run.result_stored_at));
          cursor = page.next_cursor;
        } while (cursor);
        return times;
      };
      // The figures of one side: Parallel calls and 429s, seconds from the request to the last result
      // stored, D1 rows written per input (every log line's D1 cost).
      const measure = async (
        label: string,
        count: number,
        start: () => Promise<void>,
        /** Cheap: whether every run may be finished (then the results are counted). */
        finished: () => Promise<boolean>,
        results: () => Promise<string[]>,
        /** Runs the start-and-wait (e.g. under a memory probe). */
        around: (run: () => Promise<void>) => Promise<void> = (run) => run(),
      ) => {
        await sim.reset();
        const mark = relayEvents.length;
        const before = await statsNow();
        const startedAt = new Date();
        let times: string[] = [];
        await around(async () => {
          await start();
          await waitFor(
            async () => {
              if (!(await finished().catch(() => false))) return false;
              times = await results();
              return times.length >= count;
            },
            BATCH_MAX_MS,
            `${label}: ${count} results stored`,
            5_000,
          ).catch((error: unknown) => console.log(String(error)));
        });
        const after = await statsNow();
        const events = relayEvents
          .slice(mark)
          .filter((e) => ["http.request", "cron.tick", "queue.batch"].includes(e.event));
        const written = events.reduce((n, e) => n + (e.d1_rows_written ?? 0), 0);
        const endpoints = Object.fromEntries(
          Object.entries(after.endpoints)
            .map(([k, v]) => [k, v - (before.endpoints[k] ?? 0)] as const)
            .filter(([, v]) => v > 0),
        );
        const last = times.sort().at(-1);
        return {
          inputs: count,
          results_stored: times.length,
          parallel_calls: after.calls - before.calls,
          parallel_calls_by_endpoint: endpoints,
          parallel_429s: after.throttled - before.throttled,
          seconds_request_to_last_result: last
            ? round((Date.parse(last) - startedAt.getTime()) / 1000, 1)
            : null,
          d1_rows_written_per_input: round(written / count),
        };
      };
      const inputs = (prefix: string, n: number) =>
        Array.from({ length: n }, (_, i) => ({
          input: `${prefix} ${i}: what is ${i} squared?`,
          metadata: { row: i },
        }));
      let batchId = "";
      const pid = workerPid(stack.processGroups().relay as number);
      if (!pid) throw new Error("no workerd process found for the relay");
      // The Worker's peak resident set over the whole batch (create, submission, webhooks, bulk results).
      let batchMemory: PeakMemory | null = null;
      const batch = await measure(
        "batch",
        BATCH_INPUTS,
        async () => {
          const response = await fetch(`${stack.relayUrl}/v1/batches`, {
            method: "POST",
            headers: auth,
            body: JSON.stringify({
              name: "bench",
              template: { processor: "lite", task_spec: spec },
              inputs: inputs("Batch", BATCH_INPUTS),
            }),
          });
          const body = (await response.json()) as { id: string };
          if (response.status !== 202)
            throw new Error(`batch create answered ${response.status}: ${JSON.stringify(body)}`);
          batchId = body.id;
        },
        async () => {
          const b = (await (
            await fetch(`${stack.relayUrl}/v1/batches/${batchId}`, { headers: auth })
          ).json()) as {
            counts: Record<string, number>;
          };
          const c = b.counts;
          return (c.submitting ?? 1) + (c.queued ?? 1) + (c.running ?? 1) + (c.other ?? 1) === 0;
        },
        () => storedTimes(`batch_id=${batchId}`, () => true),
        (run) =>
          peakMemoryOf(pid, run).then((peak) => {
            batchMemory = peak;
          }),
      ).catch((error: unknown) => ({ error: String(error) }));
      // The export of the whole batch, each format read to its end: its peak memory, size and time.
      const exportOf = async (format: "jsonl" | "csv") => {
        let bytes = 0;
        let lines = 0;
        let status = 0;
        const started = performance.now();
        const peak = await peakMemoryOf(pid, async () => {
          const response = await fetch(`${stack.relayUrl}/v1/batches/${batchId}/results?format=${format}`, {
            headers: auth,
          });
          status = response.status;
          const text = await response.text();
          bytes = Buffer.byteLength(text);
          lines = text.split("\n").filter((line) => line.length > 0).length;
        });
        return { status, bytes, lines, seconds: round((performance.now() - started) / 1000, 1), ...peak };
      };
      const batchExport = batchId ? { jsonl: await exportOf("jsonl"), csv: await exportOf("csv") } : null;
      const singles = await measure(
        "single runs",
        BATCH_SINGLE_RUNS,
        async () => {
          await closedLoop(BATCH_SINGLE_RUNS, CONCURRENCY, async (i) => {
            await createRun({
              processor: "lite",
              input: `Single ${i}: what is ${i} squared?`,
              task_spec: spec,
              metadata: { bench: "single7", row: i },
            });
            return new Response(null, { status: 202 });
          });
        },
        async () => (await sim.stats()).runs.completed >= BATCH_SINGLE_RUNS,
        () =>
          storedTimes(
            "status=completed",
            (run) => (run.metadata as { bench?: string } | null)?.bench === "single7",
          ),
      );
      results.batch = {
        batch,
        worker_memory_batch: batchMemory,
        export: batchExport,
        load_average: os.loadavg().map((n) => round(n, 1)),
        single_runs: singles,
      };
    }
  } finally {
    ticking = false;
    await ticker;
    await receiver.close();
    await bare.stop();
    await stack.stop();
    await rm(persistDir, { recursive: true, force: true });
  }
}

interface Recovery {
  items: number;
  recovered: number;
  /** From the moment every item was due (or the receiver came back) to the last one done. */
  seconds: number;
  tick_intervals: number;
  per_tick_interval: number;
  /** True when the wait was cut at BENCH_RECOVERY_MAX_S: `seconds` is then extrapolated from the rate. */
  cut_short: boolean;
  /** The consumer invocations meanwhile, from their `queue.batch` log lines: where the time goes. */
  consumer: ConsumerBatches;
}

interface ConsumerBatches {
  batches: number;
  /** Every message the consumer was handed, stale duplicates and sent-back ones included. */
  messages: number;
  /** Found taken by another message, or no longer due (a stale duplicate, mostly). */
  not_due: number;
  /** Per job: messages, and how many of them were not due. */
  by_job: Record<string, { messages: number; not_due: number }>;
  /** Per queue: batches and messages. */
  by_queue: Record<string, { batches: number; messages: number }>;
  latency_ms_p50: number;
  latency_ms_mean: number;
  messages_per_batch: number;
  /** Worked in the invocation: not skipped as not due, not sent back for lack of budget. */
  worked_per_batch: number;
  sent_back_per_batch: number;
  calls_per_batch: number;
}

interface BatchLine {
  at: number;
  /** The queue the batch came from (the consumer's log context). */
  queue?: string;
  latency_ms: number;
  messages: number;
  calls?: number;
  jobs?: Record<string, { messages?: number; not_due?: number; sent_back?: number }>;
}

function consumerBatches(lines: BatchLine[]): ConsumerBatches {
  const n = Math.max(1, lines.length);
  const sum = (f: (l: BatchLine) => number) => lines.reduce((total, l) => total + f(l), 0);
  const jobsSum = (l: BatchLine, field: "not_due" | "sent_back") =>
    Object.values(l.jobs ?? {}).reduce((total, j) => total + (j[field] ?? 0), 0);
  const latencies = lines.map((l) => l.latency_ms).sort((a, b) => a - b);
  const byJob: Record<string, { messages: number; not_due: number }> = {};
  for (const l of lines)
    for (const [job, j] of Object.entries(l.jobs ?? {})) {
      const into = byJob[job] ?? { messages: 0, not_due: 0 };
      byJob[job] = into;
      into.messages += j.messages ?? 0;
      into.not_due += j.not_due ?? 0;
    }
  const byQueue: Record<string, { batches: number; messages: number }> = {};
  for (const l of lines) {
    const into = byQueue[l.queue ?? "?"] ?? { batches: 0, messages: 0 };
    byQueue[l.queue ?? "?"] = into;
    into.batches++;
    into.messages += l.messages;
  }
  return {
    batches: lines.length,
    messages: sum((l) => l.messages),
    not_due: sum((l) => jobsSum(l, "not_due")),
    by_job: byJob,
    by_queue: byQueue,
    latency_ms_p50: latencies[Math.floor(latencies.length / 2)] ?? 0,
    latency_ms_mean: round(sum((l) => l.latency_ms) / n, 1),
    messages_per_batch: round(sum((l) => l.messages) / n),
    worked_per_batch: round(sum((l) => l.messages - jobsSum(l, "not_due") - jobsSum(l, "sent_back")) / n),
    sent_back_per_batch: round(sum((l) => jobsSum(l, "sent_back")) / n),
    calls_per_batch: round(sum((l) => l.calls ?? 0) / n, 1),
  };
}

/**
 * SQL on the local D1 while the relay is busy writing to it: SQLite answers SQLITE_BUSY to the second
 * writer, so the statement is tried again (the relay's own writes wait the same way).
 */
async function executeWhileBusy(persistDir: string, sql: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await executeLocalSql(persistDir, sql);
    } catch (error) {
      if (attempt >= 20 || !String(error).includes("SQLITE_BUSY")) throw error;
      await sleep(250);
    }
  }
}

/**
 * Part 6: how fast the relay recovers a backlog at the Free plan's budget. Every item is made due at
 * one moment by SQL (so the figure is the relay's, not the first poll's wait), then the clock runs
 * until the last callback arrives.
 */
async function recoveryPart(): Promise<{
  runs_webhooks_dropped: Recovery;
  deliveries_receiver_back: Recovery;
  mixed_owed_deliveries: Recovery;
  mixed_runs_webhooks_dropped: Recovery;
}> {
  console.log(
    `6/6 recovery at SUBREQUEST_BUDGET 50, a tick every 2 s (${RECOVERY_ITEMS} runs, ${RECOVERY_ITEMS} deliveries)…`,
  );
  process.env.X_LOCAL_OBSERVABILITY = "false";
  const persistDir = await mkdtemp(join(os.tmpdir(), "taskrelay-bench-recovery-"));
  const batchLines: BatchLine[] = [];
  const onOutput = (line: string) => {
    if (!line.startsWith("[relay] {") || !line.includes('"queue.batch"')) return;
    try {
      batchLines.push({
        at: Date.now(),
        ...(JSON.parse(line.slice("[relay] ".length)) as Omit<BatchLine, "at">),
      });
    } catch {
      // not a log line of ours
    }
  };
  // The defaults: SUBREQUEST_BUDGET 50 (Workers Free), SWEEP_BATCH_SIZE 1,000 rows a job a tick.
  const stack = await startLocalStack({
    onOutput,
    port: await freePort(),
    simPort: await freePort(),
    adminToken: ADMIN_TOKEN,
    webhookSecret: BENCH_WEBHOOK_SECRET,
    timeScale: TIME_SCALE,
    persistDir,
    simEnv: { SIM_SEED: "42" },
    // As the simulator's limit is lifted below: 1,000 creates at once measure recovery, not the limit.
    relayVars: { PARALLEL_CREATE_LIMIT_PER_MINUTE: "10000000" },
  });
  const key = await createApiKey(stack.relayUrl, ADMIN_TOKEN, "bench-recovery");
  const receiver = await startCallbackReceiver({ secrets: [key.signing_secret] });
  const simUrl = stack.simUrl as string;
  const auth = { authorization: `Bearer ${key.key}`, "content-type": "application/json" };
  const simConfig = async (patch: Record<string, unknown>) => {
    const r = await fetch(`${simUrl}/_sim/config`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(patch),
    });
    if (!r.ok) throw new Error(`sim config: ${await r.text()}`);
  };
  const simIdle = async () => {
    const s = (await (await fetch(`${simUrl}/_sim/stats`)).json()) as {
      runs: { queued: number; running: number };
    };
    return s.runs.queued + s.runs.running === 0;
  };
  const createRuns = async (prefix: string) => {
    const ids = new Set<string>();
    const load = await closedLoop(RECOVERY_ITEMS, CONCURRENCY, async (i) => {
      const response = await fetch(`${stack.relayUrl}/v1/runs`, {
        method: "POST",
        headers: auth,
        body: JSON.stringify({ processor: "lite", input: `${prefix} ${i}`, callback: { url: receiver.url } }),
      });
      if (response.status === 202) ids.add(((await response.clone().json()) as { id: string }).id);
      return response;
    });
    if (ids.size !== RECOVERY_ITEMS) throw new Error(`recovery creates: ${JSON.stringify(load.statuses)}`);
    return ids;
  };
  const deliveredOf = (ids: Set<string>) => () => {
    let n = 0;
    for (const d of receiver.accepted().values()) if (ids.has(d.body?.data.run.id ?? "")) n++;
    return n;
  };
  // Ticks every 2 s as a Cron Trigger would: on the clock, whether or not the last one has finished.
  let ticking = true;
  let paused = false;
  const ticks: Array<Promise<void>> = [];
  const ticker = (async () => {
    while (ticking) {
      if (!paused) ticks.push(stack.tick().catch(() => undefined));
      await sleep(RECOVERY_TICK_MS);
    }
  })();
  // The backlog is made due by SQL written to the same local SQLite file from outside the relay, which
  // holds the file's write lock meanwhile: a relay write at that moment fails SQLITE_BUSY (no such
  // outside writer on Cloudflare), and its row then waits for its lease (seen: one run in 1,000 ~25 s
  // late). So the SQL runs with the ticks paused and the consumer idle (no batch for 1 s, 5 s at most).
  // Returns the moment the rows were made due (the measurement's start), after the wait.
  const makeDue = async (sqlAt: (at: string) => string, atDue?: () => void): Promise<number> => {
    paused = true;
    await Promise.all(ticks);
    const waitFrom = Date.now();
    while (Date.now() - waitFrom < 5_000 && Date.now() - (batchLines.at(-1)?.at ?? 0) < 1_000)
      await sleep(50);
    const at = Date.now();
    atDue?.();
    await executeWhileBusy(persistDir, sqlAt(new Date(at).toISOString()));
    paused = false;
    return at;
  };
  const measure = async (done: () => number, from: number): Promise<Recovery> => {
    while (done() < RECOVERY_ITEMS && Date.now() - from < RECOVERY_MAX_MS) await sleep(50);
    const recovered = done();
    const elapsed = (Date.now() - from) / 1000;
    const cutShort = recovered < RECOVERY_ITEMS;
    const rate = recovered / (elapsed / (RECOVERY_TICK_MS / 1000));
    const seconds = cutShort ? (RECOVERY_ITEMS / rate) * (RECOVERY_TICK_MS / 1000) : elapsed;
    return {
      items: RECOVERY_ITEMS,
      recovered,
      seconds: round(seconds, 1),
      tick_intervals: round(seconds / (RECOVERY_TICK_MS / 1000), 1),
      per_tick_interval: round(rate, 1),
      cut_short: cutShort,
      consumer: consumerBatches(batchLines.filter((l) => l.at >= from)),
    };
  };
  try {
    // 5a. Every webhook dropped: the sweeper must find each run finished at Parallel.
    await simConfig({ drop_webhooks: 1, rate_limit_per_minute: 10_000_000 });
    const recoveryRuns = await createRuns("Recovery");
    await waitFor(simIdle, 120_000, "the simulator finishing the recovery runs");
    const runsFrom = await makeDue(
      (at) => `UPDATE runs SET next_sweep_at = '${at}' WHERE status IN ('queued', 'running')`,
    );
    const runs = await measure(deliveredOf(recoveryRuns), runsFrom);
    console.log(`    runs, every webhook dropped: ${JSON.stringify(runs)}`);
    // What a cut-short 5a left is set aside, so that 5b measures the deliveries alone.
    await executeWhileBusy(
      persistDir,
      "UPDATE runs SET next_sweep_at = NULL WHERE status IN ('queued', 'running')",
    );

    // 5b. 1,000 deliveries owed to a receiver answering 503, then back.
    await simConfig({ drop_webhooks: 0 });
    receiver.setFailFirstAttempts(1_000_000);
    const owedFrom = receiver.deliveries.length;
    const owedRuns = await createRuns("Owed");
    let owedProgress = "";
    const progress = setInterval(() => console.log(`    ${owedProgress}`), 15_000);
    // Each owed delivery has had its first attempt refused (and mostly its inline retry 0.5 s later);
    // then all are made due at once, whatever retry they were waiting for.
    const everyDeliveryRefused = (runIds: Set<string>, from: number) => async () => {
      const tries = new Map<string, number>();
      for (const d of receiver.deliveries.slice(from))
        if (runIds.has(d.body?.data.run.id ?? "")) tries.set(d.webhookId, (tries.get(d.webhookId) ?? 0) + 1);
      owedProgress = `${tries.size} deliveries seen, ${[...tries.values()].filter((n) => n >= 2).length} refused twice`;
      return tries.size >= RECOVERY_ITEMS;
    };
    await waitFor(everyDeliveryRefused(owedRuns, owedFrom), 600_000, "every owed delivery refused");
    clearInterval(progress);
    await sleep(1_000);
    const owedDue = (at: string) =>
      `UPDATE deliveries SET next_attempt_at = '${at}', lease_until = NULL WHERE status = 'pending'`;
    const receiverBack = () => receiver.setFailFirstAttempts(0);
    const backAt = await makeDue(owedDue, receiverBack);
    const deliveries = await measure(deliveredOf(owedRuns), backAt);
    console.log(`    deliveries, receiver back: ${JSON.stringify(deliveries)}`);

    // 6c. Mixed: 1,000 owed deliveries (as 6b) and 1,000 runs whose webhooks were dropped (as 6a),
    // all made due by one statement, the receiver back at the same moment. With one queue for all
    // work the deliveries wait behind the polls; with a queue of their own they do not.
    receiver.setFailFirstAttempts(1_000_000);
    // What 6a and 6b left, if cut short, stays out: only this case's rows are made due.
    const mixedSince = new Date().toISOString();
    const mixedFrom = receiver.deliveries.length;
    const mixedOwed = await createRuns("Mixed owed");
    const mixedProgress = setInterval(() => console.log(`    ${owedProgress}`), 15_000);
    await waitFor(everyDeliveryRefused(mixedOwed, mixedFrom), 600_000, "every mixed owed delivery refused");
    clearInterval(mixedProgress);
    await simConfig({ drop_webhooks: 1 });
    const mixedDropped = await createRuns("Mixed dropped");
    await waitFor(simIdle, 120_000, "the simulator finishing the mixed runs");
    // The dropped runs' polls found finished before this moment owe a delivery too: due with the rest.
    const mixedAt = await makeDue(
      (at) =>
        `${owedDue(at)} AND created_at >= '${mixedSince}'; UPDATE runs SET next_sweep_at = '${at}' WHERE status IN ('queued', 'running') AND created_at >= '${mixedSince}'`,
      receiverBack,
    );
    const [mixedDeliveries, mixedRuns] = await Promise.all([
      measure(deliveredOf(mixedOwed), mixedAt),
      measure(deliveredOf(mixedDropped), mixedAt),
    ]);
    return {
      runs_webhooks_dropped: runs,
      deliveries_receiver_back: deliveries,
      mixed_owed_deliveries: mixedDeliveries,
      mixed_runs_webhooks_dropped: mixedRuns,
    };
  } finally {
    ticking = false;
    await ticker;
    await Promise.all(ticks);
    await receiver.close();
    await stack.stop();
    await rm(persistDir, { recursive: true, force: true });
  }
}

/** Part 9 (overview): what one overview page costs in D1, by who looks and how much history is stored. */
interface OverviewCost {
  runs_stored: number;
  rollup_rows: number;
  pages: Record<string, { rows_read: number; queries: number }>;
}

/**
 * Part 9, the overview: a stack of its own; runs and their deliveries written straight into local D1
 * (finished, spread over 30 days, as the relay would have left them: the rollup's triggers count
 * them), then /dashboard read by a key, by the admin and by the admin filtered to one key, and the D1
 * rows each page read taken from its http.request log line.
 */
async function overviewPart(): Promise<OverviewCost[]> {
  console.log(`9 overview page D1 cost with ${OVERVIEW_STEPS.join(" and ")} runs stored…`);
  process.env.X_LOCAL_OBSERVABILITY = "false";
  const persistDir = await mkdtemp(join(os.tmpdir(), "taskrelay-bench-overview-"));
  const stack = await startLocalStack({
    port: await freePort(),
    simPort: await freePort(),
    adminToken: ADMIN_TOKEN,
    webhookSecret: BENCH_WEBHOOK_SECRET,
    timeScale: TIME_SCALE,
    persistDir,
    onOutput: collect,
  });
  try {
    collecting = true;
    const keys = [
      await createApiKey(stack.relayUrl, ADMIN_TOKEN, "bench-overview-a"),
      await createApiKey(stack.relayUrl, ADMIN_TOKEN, "bench-overview-b"),
    ];
    /** A dashboard session for this credential: its cookie. */
    const session = async (credential: string) => {
      const form = await fetch(`${stack.relayUrl}/dashboard/sign-in`);
      const token = /name="form_token" value="([^"]+)"/.exec(await form.text())?.[1] ?? "";
      const signInCookie = (form.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
      const signedIn = await fetch(`${stack.relayUrl}/dashboard/sign-in`, {
        method: "POST",
        redirect: "manual",
        headers: { "content-type": "application/x-www-form-urlencoded", cookie: signInCookie },
        body: new URLSearchParams({ form_token: token, credential }).toString(),
      });
      if (signedIn.status !== 303) throw new Error(`dashboard sign-in answered ${signedIn.status}`);
      return (signedIn.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
    };
    const viewers = {
      key: await session(keys[0]?.key ?? ""),
      admin: await session(ADMIN_TOKEN),
    };
    const pageCost = async (cookie: string, query: string) => {
      const mark = relayEvents.length;
      const response = await fetch(`${stack.relayUrl}/dashboard?${query}`, { headers: { cookie } });
      const html = await response.text();
      if (response.status !== 200 || !html.includes('data-chart="runs-chart"'))
        throw new Error(`overview answered ${response.status}: ${html.slice(0, 300)}`);
      await waitFor(
        async () => relayEvents.slice(mark).some((e) => e.event === "http.request"),
        10_000,
        "the page's log line",
      );
      const line = relayEvents.slice(mark).find((e) => e.event === "http.request");
      return { rows_read: line?.d1_rows_read ?? Number.NaN, queries: line?.d1_queries ?? Number.NaN };
    };
    const results: OverviewCost[] = [];
    let stored = 0;
    for (const target of OVERVIEW_STEPS) {
      const now = Date.now();
      // Keys alternate; outcomes mixed; two runs in three with a first delivery that ended.
      await executeLocalSql(
        persistDir,
        `WITH RECURSIVE seq(n) AS (SELECT ${stored + 1} UNION ALL SELECT n + 1 FROM seq WHERE n < ${target})
         INSERT INTO runs (id, api_key_id, status, processor, input, created_at, updated_at, finished_at, attempts)
         SELECT printf('run_benchov%08d', n), CASE WHEN n % 2 = 0 THEN '${keys[0]?.id}' ELSE '${keys[1]?.id}' END,
                CASE WHEN n % 10 < 7 THEN 'completed' WHEN n % 10 < 9 THEN 'failed' ELSE 'expired' END,
                'base', '"q"', t, t, t, 0
         FROM (SELECT n, strftime('%Y-%m-%dT%H:%M:%fZ', (${now} - ((n * 7919) % 720) * 3600000 - (n % 3600) * 1000) / 1000.0, 'unixepoch') AS t FROM seq);
         INSERT INTO deliveries (id, run_id, api_key_id, event, url, status, series, attempt_count, next_attempt_at, created_at, updated_at)
         SELECT 'dlv_' || substr(id, 5), id, api_key_id, 'run.completed', 'http://127.0.0.1:1/x', 'pending', 1, 0, finished_at, finished_at, finished_at
         FROM runs WHERE id > printf('run_benchov%08d', ${stored}) AND id LIKE 'run_benchov%' AND CAST(substr(id, 12) AS INTEGER) % 3 <> 0;
         UPDATE deliveries SET status = CASE WHEN CAST(substr(id, 12) AS INTEGER) % 11 = 0 THEN 'dead' ELSE 'succeeded' END,
           attempt_count = CASE WHEN CAST(substr(id, 12) AS INTEGER) % 11 = 0 THEN 8 ELSE 1 END,
           updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', julianday(created_at) + (15 + CAST(substr(id, 12) AS INTEGER) % 400) / 86400000.0)
         WHERE id LIKE 'dlv_benchov%' AND status = 'pending'`,
      );
      stored = target;
      const pages: OverviewCost["pages"] = {};
      for (const range of ["24h", "7d"]) {
        pages[`key, ${range}`] = await pageCost(viewers.key, `range=${range}`);
        pages[`admin, every key, ${range}`] = await pageCost(viewers.admin, `range=${range}`);
        pages[`admin, one key, ${range}`] = await pageCost(
          viewers.admin,
          `range=${range}&key=${keys[0]?.id}`,
        );
      }
      const rollupRows = await countLocalRows(persistDir, "overview_hours");
      results.push({ runs_stored: stored, rollup_rows: rollupRows, pages });
      console.log(`    ${stored} runs: ${JSON.stringify(pages)}`);
    }
    return results;
  } finally {
    await stack.stop();
    await rm(persistDir, { recursive: true, force: true });
  }
}

/** How many rows a table of the local D1 file holds (read with node:sqlite, read-only). */
async function countLocalRows(persistDir: string, table: string): Promise<number> {
  const { DatabaseSync } = await loadSqlite();
  const dir = join(persistDir, "v3", "d1", "miniflare-D1DatabaseObject");
  const file = readdirSync(dir).find((name) => name.endsWith(".sqlite") && name !== "metadata.sqlite");
  const db = new DatabaseSync(join(dir, file as string), { readOnly: true });
  try {
    return Number((db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n);
  } finally {
    db.close();
  }
}

type CpuPerRequest = GroupCpu & { simulator: number; load_generator: number };

/**
 * Wraps a load on one Worker: CPU per request of each of its processes, the simulator's and the
 * load generator's. The figures include work the Worker left for after its responses (a webhook's
 * result fetch): the snapshot after the load waits for it to settle.
 */
function cpuPerRequest(workerGroup: number, simGroup: number | null) {
  const snapshot = (): CpuPerRequest => ({
    ...groupCpuMs(workerGroup),
    simulator: simGroup ? totalCpuMs(simGroup) : 0,
    load_generator: ownCpuMs(),
  });
  return async (load: () => Promise<LoadResult>): Promise<LoadResult & { cpu: CpuPerRequest }> => {
    const before = snapshot();
    const result = await load();
    await sleep(1_000);
    const after = snapshot();
    const per = (role: keyof CpuPerRequest) => round((after[role] - before[role]) / result.requests);
    const cpu: CpuPerRequest = {
      worker: per("worker"),
      proxy: per("proxy"),
      wrangler: per("wrangler"),
      simulator: per("simulator"),
      load_generator: per("load_generator"),
    };
    return { ...result, cpu };
  };
}

interface BenchOutput {
  calls_per_run?: {
    relay_webhook_path: number;
    relay_missed_webhook_path: number;
    baseline_sdk_polling_every_2s: number;
    baseline_over_relay: number;
  };
  d1_per_run?: Record<string, { rows_read_per_run: number; rows_written_per_run: number }>;
  completion_to_callback?: Record<string, unknown>;
  throughput?: Record<string, unknown>;
  sweep_tick?: Record<string, unknown>;
  memory?: Record<string, PeakMemory>;
  isolate_heap?: Record<string, Record<string, HeapPeak>>;
  recovery?: Record<string, Recovery>;
  overview?: OverviewCost[];
  create_fairness?: CreateFairness;
  usage?: UsageBench;

  batch?: Record<
    string,
    {
      inputs?: number;
      results_stored?: number;
      parallel_calls?: number;
      parallel_429s?: number;
      seconds_request_to_last_result?: number | null;
      d1_rows_written_per_input?: number;
    }
  >;
}

/** The table: one row per figure of the parts that ran. */
function printTable(o: BenchOutput) {
  const rows: Array<[string, string]> = [];
  if (o.calls_per_run) {
    const c = o.calls_per_run;
    rows.push(["Parallel calls per run, webhook path", String(c.relay_webhook_path)]);
    rows.push(["Parallel calls per run, missed webhook", String(c.relay_missed_webhook_path)]);
    rows.push([
      "Parallel calls per run, SDK polling every 2 s",
      `${c.baseline_sdk_polling_every_2s} (${c.baseline_over_relay}x)`,
    ]);
  }
  for (const [name, value] of Object.entries(o.completion_to_callback ?? {})) {
    const l = value as { p50_ms?: number; p95_ms?: number; p99_ms?: number; samples?: number };
    if (l.p50_ms !== undefined) {
      rows.push([
        `completion to result, ${name} (p50/p95/p99 ms)`,
        `${l.p50_ms} / ${l.p95_ms} / ${l.p99_ms} (n=${l.samples})`,
      ]);
    }
  }
  for (const [name, value] of Object.entries(o.throughput ?? {})) {
    const t = value as {
      relay_per_s?: number;
      bare_worker_per_s?: number;
      ratio?: number;
      cpu_ms_per_request?: { relay: CpuPerRequest; bare_worker: CpuPerRequest };
    };
    if (t.ratio !== undefined)
      rows.push([
        `${name} per s: relay / bare Worker`,
        `${t.relay_per_s} / ${t.bare_worker_per_s} (${t.ratio})`,
      ]);
    if (t.cpu_ms_per_request) {
      const show = (c: CpuPerRequest) =>
        `${c.worker} + ${c.proxy} + ${c.wrangler} + ${c.simulator} + ${c.load_generator}`;
      rows.push([
        `${name} CPU ms/request, worker + proxy + wrangler + sim + load: relay`,
        show(t.cpu_ms_per_request.relay),
      ]);
      rows.push([`${name} CPU ms/request, same, bare Worker`, show(t.cpu_ms_per_request.bare_worker)]);
    }
  }
  for (const [path, d] of Object.entries(o.d1_per_run ?? {})) {
    // Issue 13: at most 20 rows written per completed run with one delivery (docs/benchmarks.md).
    const mark = d.rows_written_per_run <= ROWS_WRITTEN_TARGET ? "✅" : "❌";
    rows.push([
      `D1 rows read / written per run, ${path} (written ≤ ${ROWS_WRITTEN_TARGET})`,
      `${d.rows_read_per_run} / ${d.rows_written_per_run} ${mark}`,
    ]);
  }
  for (const [name, value] of Object.entries(o.sweep_tick ?? {})) {
    const t = value as { rows_read?: number; rows_written?: number };
    if (t.rows_read !== undefined)
      rows.push([`sweep tick D1 rows read / written, ${name}`, `${t.rows_read} / ${t.rows_written}`]);
  }
  for (const [name, m] of Object.entries(o.memory ?? {})) {
    rows.push([`peak RSS added by one request (MB), ${name}`, `${m.peak_added_mb} (of ${m.peak_rss_mb})`]);
  }
  for (const [name, isolates] of Object.entries(o.isolate_heap ?? {})) {
    for (const [isolate, h] of Object.entries(isolates)) {
      rows.push([
        `isolate heap (MB, JS + ArrayBuffers), ${isolate}, ${name}: before / sampled peak / after`,
        `${h.before.total_mb} / ${h.peak.total_mb} (${h.peak.array_buffers_mb} buffers) / ${h.after.total_mb}`,
      ]);
    }
  }
  if (o.usage) {
    for (const [groupBy, cost] of Object.entries(o.usage.usage_rows_read)) {
      rows.push([
        `GET /v1/usage over 30 days × 10,000 runs, group_by=${groupBy}: D1 rows read / queries`,
        `${cost.rows_read} / ${cost.queries}`,
      ]);
    }
    rows.push([
      "D1 rows written per accepted create (rollup included)",
      String(o.usage.create_rows_written_per_run),
    ]);
  }
  for (const [name, r] of Object.entries(o.recovery ?? {})) {
    rows.push([
      `recovery, ${name}: seconds / tick intervals / per interval`,
      `${r.seconds}${r.cut_short ? " (extrapolated)" : ""} / ${r.tick_intervals} / ${r.per_tick_interval} (${r.recovered} of ${r.items})`,
    ]);
  }
  for (const step of o.overview ?? []) {
    for (const [viewer, cost] of Object.entries(step.pages)) {
      rows.push([
        `overview D1 rows read / queries, ${viewer}, ${step.runs_stored} runs`,
        `${cost.rows_read} / ${cost.queries}`,
      ]);
    }
  }
  if (o.create_fairness) {
    const f = o.create_fairness;
    rows.push([
      `create fairness at ${f.limit_per_minute}/min, single runs beside ${f.burst}: create to submitted p50/p99 ms`,
      `${f.create_to_submitted_ms.p50} / ${f.create_to_submitted_ms.p99} (max ${f.create_to_submitted_ms.max})`,
    ]);
    rows.push([
      "create fairness: the same single runs alone, create to submitted p50/p99 ms",
      `${f.create_to_submitted_alone_ms.p50} / ${f.create_to_submitted_alone_ms.p99} (max ${f.create_to_submitted_alone_ms.max})`,
    ]);
    rows.push([
      "create fairness: the limiter's wait for each single run beside the burst p50/p99 ms",
      `${f.limiter_wait_ms.p50} / ${f.limiter_wait_ms.p99} (max ${f.limiter_wait_ms.max}; ${f.singles_deferred} not sent by their request, ${f.singles_unsubmitted} not at Parallel after 3 min)`,
    ]);
    rows.push(["create fairness: Parallel 429s", String(f.parallel_429s)]);
    rows.push([
      "create fairness: burst at Parallel after (s)",
      f.burst_submitted_s === null ? `not all (${f.burst_submitted})` : String(f.burst_submitted_s),
    ]);
    rows.push([
      "create limiter call per create: ms p50/p99, not hidden by the D1 insert p50/p99",
      `${f.limiter_ms.p50} / ${f.limiter_ms.p99}, ${f.limiter_added_ms.p50} / ${f.limiter_added_ms.p99} (n=${f.limiter_ms.samples})`,
    ]);
  }
  for (const [name, b] of Object.entries(o.batch ?? {})) {
    if (b.parallel_calls === undefined) continue;
    rows.push([
      `${b.inputs} lite inputs, ${name}: Parallel calls / 429s / s to last result / D1 rows written per input`,
      `${b.parallel_calls} / ${b.parallel_429s} / ${b.seconds_request_to_last_result} / ${b.d1_rows_written_per_input} (${b.results_stored} stored)`,
    ]);
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  console.log(`\n${rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join("\n")}\n\nWrote bench-results.json`);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exit(1);
});
