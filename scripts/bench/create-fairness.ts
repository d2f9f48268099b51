// Bench part 8: create fairness under the create limiter (src/limiter/), on a stack of its own.
// Two keys: one sends a burst far over the limit, the other creates single runs at 1 a second
// meanwhile. Measured: the single runs' create-to-submitted delay (from the POST leaving the load
// generator to the run's `submitted_at`), the 429s the simulator answered (it enforces the same
// limit, as Parallel would), how long the burst took to reach Parallel, and what the limiter's call
// costs a create (its time, and the part of it not hidden behind the run's D1 insert).
//
// The limit is lowered (PARALLEL_CREATE_LIMIT_PER_MINUTE = FAIRNESS_LIMIT, 300 a minute) so that a
// burst several minutes' worth of creates takes a few minutes, not many.
import { appendFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import { join } from "node:path";
import { createApiKey, freePort, startLocalStack } from "../local-stack.ts";
import { groupScheduledMs, type Scheduled } from "./cpu.ts";
import { closedLoop, percentile, sleep, steadyRate } from "./load.ts";

export const FAIRNESS_LIMIT = Number(process.env.BENCH_FAIRNESS_LIMIT ?? 300);
const BURST_RUNS = Number(process.env.BENCH_FAIRNESS_BURST ?? 900);
const SINGLE_RUNS = Number(process.env.BENCH_FAIRNESS_SINGLES ?? 60);
/** A file to append the stack's output to, to see what the relay did. */
const LOG_TO = process.env.BENCH_FAIRNESS_LOG;
const SINGLES_MAX_MS = 180_000;
const BURST_MAX_MS = Number(process.env.BENCH_FAIRNESS_MAX_S ?? 600) * 1000;

interface Spread {
  p50: number;
  p99: number;
  max: number;
}

export interface CreateFairness {
  limit_per_minute: number;
  burst: string;
  single_runs: number;
  /** The single runs beside the burst: from the POST leaving the load generator to Parallel's accept. */
  create_to_submitted_ms: Spread;
  /** The same single runs with no burst: what the (loaded) machine takes by itself. */
  create_to_submitted_alone_ms: Spread;
  /** Where the single runs' time went beside the burst, and alone. */
  breakdown: CreateBreakdown;
  breakdown_alone: CreateBreakdown;
  /** What Linux's scheduler did for the relay and the simulator while the single runs were sent. */
  scheduler: SchedulerShare;
  scheduler_alone: SchedulerShare;
  /** The wait the limiter gave each single run beside the burst (0: a slot at once). */
  limiter_wait_ms: Spread;
  /** Single runs beside the burst the limiter had no slot for within its hold (sent by the sweeper). */
  singles_deferred: number;
  /** Single runs beside the burst still not at Parallel after SINGLES_MAX_MS (left out of the delays). */
  singles_unsubmitted: number;
  parallel_429s: number;
  burst_submitted_s: number | null;
  burst_submitted: number;
  limiter_ms: { p50: number; p99: number; samples: number };
  limiter_added_ms: { p50: number; p99: number };
}

/** A create's steps as the relay logged them: its request's start (epoch ms), then ms after the row's created_at. */
interface CreateSteps {
  requestInMs: number;
  sentAfterMs: number;
  parallelCreatedAfterMs: number;
  answeredAfterMs: number;
  updatedAfterMs: number;
}

/** Where each single run's create-to-submitted time went, step by step (p50/p99/max of each). */
export interface CreateBreakdown {
  /** The POST leaving the load generator → the relay's request handler starting. */
  post_to_request_in: Spread;
  /** Request in → the run's row made (auth, the budget reservation). */
  request_in_to_row: Spread;
  /** The row made → the create sent to Parallel (the insert and the limiter ask side by side, then its wait). */
  row_to_sent: Spread;
  /** Sent → the run made at Parallel (its created_at): the request's way there and its queue. */
  sent_to_parallel_created: Spread;
  /** Made at Parallel → the answer back in the relay (submitted_at). */
  parallel_created_to_answered: Spread;
  /** The answer → the row updated (not part of create → submitted). */
  answered_to_row_updated: Spread;
  /** The POST's own response at the load generator (202). */
  post_answered: Spread;
  samples: number;
}

const spread = (values: number[]): Spread => ({
  p50: Math.round(percentile(values, 50)),
  p99: Math.round(percentile(values, 99)),
  max: Math.round(Math.max(...values)),
});

/** Per process, over a window: time on a CPU and time runnable but waiting for one (cpu.ts). */
interface SchedulerShare {
  window_s: number;
  load_average: number;
  relay_worker: { on_cpu_s: number; waiting_for_cpu_s: number };
  relay_proxy: { on_cpu_s: number; waiting_for_cpu_s: number };
  simulator: { on_cpu_s: number; waiting_for_cpu_s: number };
}

interface Stack {
  relayUrl: string;
}
type Auth = Record<string, string>;

/**
 * The heavy key's load: BURST_RUNS single runs, 16 in flight. When batches land this becomes one
 * `POST /v1/batches` of 10,000 inputs (the one change: this function and its label); everything
 * after it counts the key's runs, which batch runs are too.
 */
const BURST = {
  label: `${BURST_RUNS} single runs`,
  send: async (stack: Stack, auth: Auth) => {
    const load = await closedLoop(BURST_RUNS, 16, (i) =>
      fetch(`${stack.relayUrl}/v1/runs`, {
        method: "POST",
        headers: auth,
        body: JSON.stringify({ processor: "lite", input: `Burst ${i}` }),
      }),
    );
    if (load.ok !== BURST_RUNS) throw new Error(`burst creates: ${JSON.stringify(load.statuses)}`);
  },
};

export async function createFairnessPart(options: {
  adminToken: string;
  webhookSecret: string;
  timeScale: number;
}): Promise<CreateFairness> {
  console.log(
    `8/8 create fairness at ${FAIRNESS_LIMIT} creates a minute (${BURST.label} from one key, ${SINGLE_RUNS} at 1/s from another)…`,
  );
  const persistDir = await mkdtemp(join(os.tmpdir(), "taskrelay-bench-fairness-"));
  const limiterSteps: Array<{
    run_id: string;
    limiter_ms: number;
    limiter_added_ms: number;
    limiter_wait_ms: number;
  }> = [];
  /** Per run, the relay's timestamps (epoch ms) of its create's steps, from its request's log line. */
  const createSteps = new Map<string, CreateSteps>();
  const stack = await startLocalStack({
    port: await freePort(),
    simPort: await freePort(),
    adminToken: options.adminToken,
    webhookSecret: options.webhookSecret,
    timeScale: options.timeScale,
    persistDir,
    simEnv: { SIM_SEED: "42" },
    relayVars: { PARALLEL_CREATE_LIMIT_PER_MINUTE: String(FAIRNESS_LIMIT) },
    onOutput: (line) => {
      if (LOG_TO) appendFileSync(LOG_TO, `${line}\n`);
      if (!line.startsWith("[relay] {")) return;
      try {
        const event = JSON.parse(line.slice("[relay] ".length)) as {
          event?: string;
          time?: string;
          background_ms?: number;
          steps?: Array<{
            step: string;
            run_id: string;
            limiter_ms?: number;
            limiter_added_ms?: number;
            limiter_wait_ms?: number;
            created_at_ms?: number;
            sent_after_ms?: number;
            parallel_created_after_ms?: number;
            answered_after_ms?: number;
            updated_after_ms?: number;
          }>;
        };
        const requestInMs =
          event.event === "http.request" && event.time && event.background_ms !== undefined
            ? Date.parse(event.time) - event.background_ms
            : null;
        // A create's own request logs its limiter figures (a resubmission's does not: no D1 insert beside it).
        for (const step of event.steps ?? []) {
          if (step.step !== "run.submitted" || step.limiter_ms === undefined) continue;
          if (requestInMs !== null && step.sent_after_ms !== undefined) {
            createSteps.set(step.run_id, {
              requestInMs,
              sentAfterMs: step.sent_after_ms,
              parallelCreatedAfterMs: step.parallel_created_after_ms ?? Number.NaN,
              answeredAfterMs: step.answered_after_ms ?? Number.NaN,
              updatedAfterMs: step.updated_after_ms ?? Number.NaN,
            });
          }
          limiterSteps.push({
            run_id: step.run_id,
            limiter_ms: step.limiter_ms,
            limiter_added_ms: step.limiter_added_ms ?? 0,
            limiter_wait_ms: step.limiter_wait_ms ?? 0,
          });
        }
      } catch {
        // not a log line of ours
      }
    },
  });
  const simUrl = stack.simUrl as string;
  let ticking = true;
  const ticker = (async () => {
    while (ticking) {
      await stack.tick().catch(() => undefined);
      await sleep(60_000 * options.timeScale);
    }
  })();
  try {
    // The simulator enforces the same limit, as Parallel enforces its own: any excess is a 429.
    await fetch(`${simUrl}/_sim/reset`, { method: "POST" });
    const configured = await fetch(`${simUrl}/_sim/config`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ rate_limit_per_minute: FAIRNESS_LIMIT }),
    });
    if (!configured.ok) throw new Error(`sim config: ${await configured.text()}`);
    const keyOf = async (name: string) => {
      const key = await createApiKey(stack.relayUrl, options.adminToken, name);
      return { authorization: `Bearer ${key.key}`, "content-type": "application/json" };
    };
    const heavy = await keyOf("bench-burst");
    const light = await keyOf("bench-singles");

    /** SINGLE_RUNS single runs at 1 a second; each one's create-to-submitted delay once all are at Parallel. */
    const singles = async (label: string) => {
      const postedAt = new Map<string, number>();
      const rows = new Map<string, { createdMs: number; answeredMs: number }>();
      const scheduledBefore = scheduledNow();
      await steadyRate(SINGLE_RUNS, 1, async (i) => {
        const at = Date.now();
        const response = await fetch(`${stack.relayUrl}/v1/runs`, {
          method: "POST",
          headers: light,
          body: JSON.stringify({ processor: "lite", input: `Single ${label} ${i}` }),
        });
        const run = (await response.json()) as { id: string; created_at: string };
        if (response.status !== 202) throw new Error(`single create answered ${response.status}`);
        postedAt.set(run.id, at);
        rows.set(run.id, { createdMs: Date.parse(run.created_at), answeredMs: Date.now() - at });
      });
      const scheduler = scheduledSince(scheduledBefore);
      const delays = new Map<string, number>();
      // Up to SINGLES_MAX_MS for the last of them: one whose create met a transient error (a
      // timeout on a loaded machine) is the sweeper's, behind the burst's resubmissions.
      const until = Date.now() + SINGLES_MAX_MS;
      while (delays.size < postedAt.size && Date.now() < until) {
        for (const [id, at] of postedAt) {
          if (delays.has(id)) continue;
          const run = (await (await fetch(`${stack.relayUrl}/v1/runs/${id}`, { headers: light })).json()) as {
            submitted_at: string | null;
          };
          if (run.submitted_at) delays.set(id, Date.parse(run.submitted_at) - at);
        }
        await sleep(500);
      }
      const steps = limiterSteps.filter((step) => postedAt.has(step.run_id));
      const parts: Record<Exclude<keyof CreateBreakdown, "samples">, number[]> = {
        post_to_request_in: [],
        request_in_to_row: [],
        row_to_sent: [],
        sent_to_parallel_created: [],
        parallel_created_to_answered: [],
        answered_to_row_updated: [],
        post_answered: [],
      };
      for (const [id, at] of postedAt) {
        const row = rows.get(id);
        const logged = createSteps.get(id);
        if (!row || !logged) continue;
        parts.post_to_request_in.push(logged.requestInMs - at);
        parts.request_in_to_row.push(row.createdMs - logged.requestInMs);
        parts.row_to_sent.push(logged.sentAfterMs);
        parts.sent_to_parallel_created.push(logged.parallelCreatedAfterMs - logged.sentAfterMs);
        parts.parallel_created_to_answered.push(logged.answeredAfterMs - logged.parallelCreatedAfterMs);
        parts.answered_to_row_updated.push(logged.updatedAfterMs - logged.answeredAfterMs);
        parts.post_answered.push(row.answeredMs);
      }
      const breakdown = {
        ...(Object.fromEntries(Object.entries(parts).map(([name, values]) => [name, spread(values)])) as Omit<
          CreateBreakdown,
          "samples"
        >),
        samples: parts.post_answered.length,
      };
      // A single run the limiter deferred to the sweeper has no such step: counted apart.
      return {
        breakdown,
        scheduler,
        delays: [...delays.values()],
        waits: steps.map((step) => step.limiter_wait_ms),
        deferred: postedAt.size - steps.length,
        unsubmitted: postedAt.size - delays.size,
      };
    };

    /** The scheduler's figures of the relay's and the simulator's processes so far. */
    const scheduledNow = () => {
      const groups = stack.processGroups();
      return {
        relay: groups.relay ? groupScheduledMs(groups.relay) : null,
        sim: groups.sim ? groupScheduledMs(groups.sim) : null,
        at: Date.now(),
      };
    };
    /** Over the single runs' sending: each process's time on a CPU and time waiting for one, in s. */
    const scheduledSince = (before: ReturnType<typeof scheduledNow>): SchedulerShare => {
      const after = scheduledNow();
      const seconds = (ms: number) => Math.round(ms / 100) / 10;
      const of = (a: Scheduled | undefined, b: Scheduled | undefined) => ({
        on_cpu_s: seconds((b?.runMs ?? 0) - (a?.runMs ?? 0)),
        waiting_for_cpu_s: seconds((b?.waitMs ?? 0) - (a?.waitMs ?? 0)),
      });
      return {
        window_s: seconds(after.at - before.at),
        load_average: Math.round((os.loadavg()[0] ?? 0) * 10) / 10,
        relay_worker: of(before.relay?.worker, after.relay?.worker),
        relay_proxy: of(before.relay?.proxy, after.relay?.proxy),
        simulator: of(before.sim?.wrangler, after.sim?.wrangler),
      };
    };

    // The same single runs first alone, for what this machine adds without any contention.
    const alone = await singles("alone");
    const startedAt = Date.now();
    const burst = BURST.send(stack, heavy);
    await sleep(2_000);
    const beside = await singles("beside the burst");
    await burst;

    const stillSubmitting = async () => {
      const page = (await (
        await fetch(`${stack.relayUrl}/v1/runs?status=submitting&limit=100`, { headers: heavy })
      ).json()) as { data: unknown[] };
      return page.data.length;
    };
    let burstDoneAt: number | null = null;
    while (Date.now() - startedAt < BURST_MAX_MS) {
      if ((await stillSubmitting()) === 0) {
        burstDoneAt = Date.now();
        break;
      }
      await sleep(1_000);
    }
    const stats = (await (await fetch(`${simUrl}/_sim/stats`)).json()) as {
      rate_limited: number;
      runs: { created: number };
    };
    const limiterMs = limiterSteps.map((s) => s.limiter_ms);
    const addedMs = limiterSteps.map((s) => s.limiter_added_ms);
    return {
      limit_per_minute: FAIRNESS_LIMIT,
      burst: BURST.label,
      single_runs: SINGLE_RUNS,
      create_to_submitted_ms: spread(beside.delays),
      create_to_submitted_alone_ms: spread(alone.delays),
      breakdown: beside.breakdown,
      breakdown_alone: alone.breakdown,
      scheduler: beside.scheduler,
      scheduler_alone: alone.scheduler,
      limiter_wait_ms: spread(beside.waits),
      singles_deferred: beside.deferred,
      singles_unsubmitted: beside.unsubmitted,
      parallel_429s: stats.rate_limited,
      burst_submitted_s: burstDoneAt ? Math.round((burstDoneAt - startedAt) / 100) / 10 : null,
      // Runs Parallel accepted, the single runs aside (a batch's runs count one by one too).
      burst_submitted: stats.runs.created - 2 * SINGLE_RUNS,
      limiter_ms: {
        p50: percentile(limiterMs, 50),
        p99: percentile(limiterMs, 99),
        samples: limiterMs.length,
      },
      limiter_added_ms: { p50: percentile(addedMs, 50), p99: percentile(addedMs, 99) },
    };
  } finally {
    ticking = false;
    await ticker;
    await stack.stop();
    await rm(persistDir, { recursive: true, force: true });
  }
}
