// A cron tick stays within SUBREQUEST_BUDGET: D1 calls plus outbound requests, its work after the tick
// included. Workers Free refuses the 51st in one invocation; this is the Free plan's worst case,
// measured: a backlog of runs whose webhooks were lost, each found completed by a poll, whose result
// fetch fails once, and whose callback receiver fails the first attempt.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { runScheduledTick } from "../../src/cron/dispatcher";
import { RECEIVER } from "./delivery-harness";
import {
  createTenant,
  expectJson,
  fakeParallel,
  parallelError,
  postJson,
  resultReply,
  TEXT_RUN,
  taskRun,
} from "./harness";
import { network } from "./setup";

const BACKLOG = 12;

/** env.DB counting every call that reaches D1: a statement's run/all/first/raw, or one batch. */
function countingDatabase(db: D1Database) {
  let calls = 0;
  const originals = new WeakMap<object, D1PreparedStatement>();
  const wrap = (statement: D1PreparedStatement): D1PreparedStatement => {
    const counted = (<T>(call: () => T): T => {
      calls++;
      return call();
    }) as <T>(call: () => T) => T;
    const wrapped = {
      bind: (...values: unknown[]) => wrap(statement.bind(...values)),
      first: (column?: string) => counted(() => (column ? statement.first(column) : statement.first())),
      run: () => counted(() => statement.run()),
      all: () => counted(() => statement.all()),
      raw: (options?: { columnNames?: boolean }) =>
        counted(() => (options?.columnNames ? statement.raw({ columnNames: true }) : statement.raw())),
    };
    originals.set(wrapped, statement);
    return wrapped as unknown as D1PreparedStatement;
  };
  const database = {
    prepare: (query: string) => wrap(db.prepare(query)),
    batch: (statements: D1PreparedStatement[]) => {
      calls++;
      return db.batch(statements.map((s) => originals.get(s) ?? s));
    },
    exec: (query: string) => {
      calls++;
      return db.exec(query);
    },
  };
  return { database: database as unknown as D1Database, calls: () => calls };
}

/** Runs one tick with these settings and counts what it cost, until its background work settled. */
async function measuredTick(at: Date, settings: Record<string, string>) {
  const d1 = countingDatabase(env.DB);
  const fetches = vi.spyOn(globalThis, "fetch");
  const ctx = createExecutionContext();
  const summaries = await runScheduledTick({ ...env, ...settings, DB: d1.database }, ctx, at);
  await waitOnExecutionContext(ctx);
  const outbound = fetches.mock.calls.length;
  fetches.mockRestore();
  return { summaries, cost: d1.calls() + outbound };
}

/** Parallel reports every run completed; each run's first /result answers 503, the next the result. */
function parallelFinishedEverything() {
  const resultCalls = new Map<string, number>();
  return fakeParallel({
    retrieve: (call) =>
      HttpResponse.json(taskRun({ run_id: call.path.split("/")[4] ?? "", status: "completed" })),
    result: (call) => {
      const id = call.path.split("/")[4] ?? "";
      resultCalls.set(id, (resultCalls.get(id) ?? 0) + 1);
      return resultCalls.get(id) === 1 ? parallelError(503, "Service unavailable") : resultReply(id);
    },
  });
}

/** A receiver failing each delivery's first attempt (taskrelay retries 5 s later, inline). */
function receiverFailingFirstAttempts() {
  const seen = new Set<string>();
  network.use(
    http.post(RECEIVER, ({ request }) => {
      const id = request.headers.get("webhook-id") ?? "";
      if (seen.has(id)) return new HttpResponse(null, { status: 204 });
      seen.add(id);
      return new HttpResponse("not yet", { status: 503 });
    }),
  );
}

async function storeBacklog() {
  const tenant = await createTenant();
  fakeParallel();
  for (let i = 0; i < BACKLOG; i++) {
    await expectJson(
      await postJson("/v1/runs", { ...TEXT_RUN, callback: { url: RECEIVER } }, tenant.auth),
      202,
    );
  }
  network.resetHandlers();
}

const finishedRuns = async () =>
  (await env.DB.prepare(
    "SELECT COUNT(*) AS n FROM runs WHERE status = 'completed' AND next_sweep_at IS NULL",
  ).first<{
    n: number;
  }>("n")) ?? 0;

// Every webhook lost: a tick ten minutes on finds all of them due for their first poll.
const later = () => new Date(Date.now() + 10 * 60_000);
// Retries after 5 s become 5 ms; the quick /result retry stays 0.5 s.
const FAST = { POLL_TIME_SCALE: "0.001", SWEEP_BATCH_SIZE: "100" };

beforeEach(async () => {
  await env.DB.batch([
    env.DB.prepare("DELETE FROM delivery_attempts"),
    env.DB.prepare("DELETE FROM deliveries"),
    env.DB.prepare("DELETE FROM run_events"),
    env.DB.prepare("DELETE FROM runs"),
  ]);
});

afterEach(() => {
  vi.restoreAllMocks();
});

describe("the tick budget", () => {
  it("keeps a tick of the worst kind within the Free plan's 50 calls, and still makes progress", async () => {
    await storeBacklog();
    parallelFinishedEverything();
    receiverFailingFirstAttempts();

    const { summaries, cost } = await measuredTick(later(), { ...FAST, SUBREQUEST_BUDGET: "50" });
    expect(cost).toBeLessThanOrEqual(50);
    // 50 − 7 claims = 43, at 18 a poll: two runs, each finished and delivered in this tick.
    expect(summaries.poll_runs).toMatchObject({ claimed: 2, finished: 2 });
    expect(await finishedRuns()).toBe(2);
    // Each of them: poll, /result twice, and its callback twice (the first refused).
    expect(cost).toBeGreaterThan(7 + 2 * 6);
  });

  it("is what bounds such a tick: with a Paid plan's budget the same backlog costs far more than 50", async () => {
    await storeBacklog();
    parallelFinishedEverything();
    receiverFailingFirstAttempts();

    const { summaries, cost } = await measuredTick(later(), { ...FAST, SUBREQUEST_BUDGET: "1000" });
    expect(summaries.poll_runs).toMatchObject({ claimed: BACKLOG, finished: BACKLOG });
    expect(await finishedRuns()).toBe(BACKLOG);
    expect(cost).toBeGreaterThan(50);
    // The reservation per row is a worst case: what a row really cost stays within it.
    expect((cost - 7) / BACKLOG).toBeLessThanOrEqual(18);
  });

  it("gives later jobs nothing once the budget is spent, and leaves their rows due for the next tick", async () => {
    await storeBacklog();
    parallelFinishedEverything();
    receiverFailingFirstAttempts();
    const { summaries } = await measuredTick(later(), { ...FAST, SUBREQUEST_BUDGET: "25" });
    // 25 − 7 = 18: one poll; nothing left for the resubmissions after it.
    expect(summaries.poll_runs).toMatchObject({ claimed: 1 });
    expect(summaries.resubmit_runs).toMatchObject({ claimed: 0 });
    const next = await measuredTick(later(), { ...FAST, SUBREQUEST_BUDGET: "25" });
    expect(next.summaries.poll_runs).toMatchObject({ claimed: 1 });
    expect(await finishedRuns()).toBe(2);
  });
});
