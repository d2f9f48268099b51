// A model-based test of a run's life: fast-check generates histories — a create, then any mix of the
// create retried, Parallel's webhook (on time, late, duplicated, re-sent under a new id, for an older
// Parallel run), cron ticks, time passing (leases running out, the first poll coming due), a worker
// dying before any of its D1 steps, Parallel failing creates and result fetches, and a receiver
// failing or refusing callbacks. Each history runs in workerd on real D1 through the service verbs
// (createRun, receiveParallelWebhook) and the Worker's cron handler followed by the queue consumer,
// then time runs on until nothing is due, and the invariants listed in docs/architecture.md (Testing) are checked.
// MODEL_RUNS sets the number of histories (default 1,000); MODEL_SEED and MODEL_PATH (both printed
// with a failure) replay the failing history at once.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { HttpResponse, http } from "msw";
import { beforeAll, describe, expect, it } from "vitest";
import type { WorkMessage } from "../../src/cron/work";
import { listRunEvents } from "../../src/db/run-events";
import { TERMINAL_STATUSES } from "../../src/db/runs";
import { readConfig } from "../../src/env";
import worker from "../../src/index";
import { createLogger } from "../../src/log";
import { RunRequestSchema } from "../../src/schemas/runs";
import { createServiceContext } from "../../src/services/context";
import { receiveParallelWebhook } from "../../src/services/parallel-webhook";
import { createRun } from "../../src/services/runs";
import { firstPollAt } from "../../src/services/timing";
import {
  createTenant,
  JSON_OUTPUT,
  PARALLEL,
  resultReply,
  type Tenant,
  taskRun,
  webhookBody,
} from "./harness";
import { capturingQueue, consume } from "./queue-harness";
import { network } from "./setup";

const RECEIVER = "https://receiver.test/model";
const HOUR = 3_600_000;
const numRuns = Number(env.MODEL_RUNS || 1_000);
const seed = env.MODEL_SEED ? Number(env.MODEL_SEED) : undefined;
// Warnings (a failed attempt, a retry) are expected by the thousand here; errors still show.
const modelEnv: Cloudflare.Env = { ...env, LOG_LEVEL: "error" };
const config = readConfig(modelEnv);
const quiet = createLogger({}, "error");

// --- Histories -----------------------------------------------------------------------------------

/** Before which of its D1 operations the step's worker dies (nothing after it runs), if it does. */
const death = fc.oneof(
  { weight: 6, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 8 }) },
);

type Step =
  | { kind: "create"; die: number | undefined }
  | { kind: "webhook"; parallelRun: number; freshId: boolean; die: number | undefined }
  | { kind: "tick"; die: number | undefined }
  | { kind: "wait"; ms: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant("create" as const), die: death }),
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("webhook" as const),
      parallelRun: fc.nat({ max: 2 }),
      freshId: fc.boolean(),
      die: death,
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("tick" as const), die: death }) },
  {
    weight: 2,
    // 5 s; a lease runs out (30 s); the first poll comes due (the webhook is late); hours later.
    arbitrary: fc.record({
      kind: fc.constant("wait" as const),
      ms: fc.constantFrom(5_000, 31_000, 161_000, 2 * HOUR),
    }),
  },
);

/** A receiver's answers, in order; after them it answers 204. 503s say Retry-After: 60. */
const receiverScript = fc.oneof(
  { weight: 12, arbitrary: fc.constant([]) },
  { weight: 4, arbitrary: fc.array(fc.constant(503 as const), { minLength: 1, maxLength: 2 }) },
  { weight: 2, arbitrary: fc.constant([503 as const, 410 as const]) },
  { weight: 1, arbitrary: fc.constant(Array<503>(8).fill(503)) },
);
/** How many calls of a kind Parallel fails first (503 or 429 with Retry-After: 60): mostly none. */
const failures = fc.oneof(
  { weight: 4, arbitrary: fc.constant(0) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 2 }) },
);

const history = fc.record({
  outcome: fc.constantFrom("completed" as const, "failed" as const),
  withKey: fc.boolean(),
  withCallback: fc.oneof(
    { weight: 4, arbitrary: fc.constant(true) },
    { weight: 1, arbitrary: fc.constant(false) },
  ),
  createFailures: failures,
  resultFailures: failures,
  receiver: receiverScript,
  firstCreateDies: death,
  steps: fc.array(step, { maxLength: 5 }),
});
type History = typeof history extends fc.Arbitrary<infer T> ? T : never;

// --- The world around the relay: Parallel, the receiver, a clock, workers that can die -----------

type CallKind = "create" | "get" | "result" | "post";

interface World {
  history: History;
  parallelRuns: Array<{ id: string; metadata: Record<string, unknown> }>;
  /** Calls answered 2xx (Parallel's work done, a callback taken), and refused on purpose. */
  answered: Record<CallKind, number>;
  failed: Record<CallKind, number>;
  /** What the receiver was sent: the webhook-id and what it answered. */
  posts: Array<{ webhookId: string; status: number }>;
  /** A call answered since the current worker's last D1 operation: lost if the worker dies now. */
  unrecorded: CallKind | null;
  /** Calls whose answer no worker recorded (it died first): each may be made once more. */
  lost: Record<CallKind, number>;
  /** The worker of the step in progress; a dead one makes no further call. */
  worker: { dead: boolean; inFlight: number };
  /** Delayed messages of either queue (a consumer's follow-ups), handed to the consumer once `at` comes. */
  delayed: Array<{ at: number; body: WorkMessage }>;
  now: number;
}

const counts = (): Record<CallKind, number> => ({ create: 0, get: 0, result: 0, post: 0 });
let world: World;
let opsTotal = 0;
let ticksTotal = 0;

/** Answers a call for the live worker; a dead worker's call never gets through. */
async function answer(kind: CallKind, reply: () => Response, ok: boolean): Promise<Response> {
  if (world.worker.dead) return new Promise<Response>(() => {});
  if (ok) {
    world.answered[kind]++;
    world.unrecorded = kind;
  } else world.failed[kind]++;
  return reply();
}

function installWorld() {
  const retryLater = (status: number) =>
    HttpResponse.json(
      { type: "error", error: { ref_id: "model", message: "try again", detail: null } },
      { status, headers: { "retry-after": "60" } },
    );
  network.use(
    http.post(`${PARALLEL}/v1/tasks/runs`, async ({ request }) => {
      const body = (await request.json()) as { processor: string; metadata: Record<string, unknown> };
      if (world.failed.create < world.history.createFailures)
        return answer("create", () => retryLater(503), false);
      return answer(
        "create",
        () => {
          const run = taskRun({ processor: body.processor, metadata: body.metadata });
          world.parallelRuns.push({ id: run.run_id, metadata: body.metadata });
          return HttpResponse.json(run, { status: 202 });
        },
        true,
      );
    }),
    http.get(`${PARALLEL}/v1/tasks/runs/:id/result`, ({ params }) => {
      if (world.failed.result < world.history.resultFailures)
        return answer("result", () => retryLater(429), false);
      // Never asked for a failed run's result: answered (404) but counted, so the bound catches it.
      if (world.history.outcome !== "completed") {
        return answer(
          "result",
          () => HttpResponse.json({ error: { message: "failed" } }, { status: 404 }),
          true,
        );
      }
      return answer("result", () => resultReply(String(params.id)), true);
    }),
    http.get(`${PARALLEL}/v1/tasks/runs/:id`, ({ params }) => {
      const known = world.parallelRuns.find((r) => r.id === params.id);
      if (!known)
        return answer("get", () => HttpResponse.json({ error: { message: "no" } }, { status: 404 }), false);
      const state = {
        run_id: known.id,
        status: world.history.outcome,
        is_active: false,
        metadata: known.metadata,
      };
      return answer("get", () => HttpResponse.json(taskRun(state)), true);
    }),
    http.post(RECEIVER, ({ request }) => {
      const status = world.history.receiver[world.posts.length] ?? 204;
      const webhookId = request.headers.get("webhook-id") ?? "";
      return answer(
        "post",
        () => {
          world.posts.push({ webhookId, status });
          return new HttpResponse(null, { status, headers: status === 503 ? { "retry-after": "60" } : {} });
        },
        status === 204,
      );
    }),
  );
}

/**
 * D1 as one worker sees it: before its `dieAt`-th operation the worker dies — that operation and
 * every later one never return, so nothing after that point of the step happens, as when an
 * invocation is killed. A Parallel or receiver answer not yet followed by a D1 write is then lost.
 */
function workerDb(dieAt: number | undefined, died: () => void): D1Database {
  world.worker = { dead: false, inFlight: 0 };
  const real = env.DB;
  const self = world.worker;
  let operations = 0;
  const never = new Promise<never>(() => {});
  const operation = async <T>(run: () => Promise<T>): Promise<T> => {
    if (self.dead) return never;
    operations++;
    opsTotal++;
    if (dieAt !== undefined && operations >= dieAt) {
      self.dead = true;
      if (world.unrecorded) world.lost[world.unrecorded]++;
      world.unrecorded = null;
      died();
      return never;
    }
    self.inFlight++;
    try {
      const result = await run();
      // An operation the worker started before it died answers a worker that is gone.
      if (self.dead) return never;
      world.unrecorded = null;
      return result;
    } finally {
      self.inFlight--;
    }
  };
  const statements = new WeakMap<object, D1PreparedStatement>();
  const wrap = (statement: D1PreparedStatement): D1PreparedStatement => {
    const wrapped = {
      bind: (...values: unknown[]) => wrap(statement.bind(...values)),
      first: (column?: string) => operation(() => (column ? statement.first(column) : statement.first())),
      all: () => operation(() => statement.all()),
      run: () => operation(() => statement.run()),
      raw: () => operation(() => statement.raw()),
    } as unknown as D1PreparedStatement;
    statements.set(wrapped, statement);
    return wrapped;
  };
  return {
    prepare: (query: string) => wrap(real.prepare(query)),
    batch: (list: D1PreparedStatement[]) =>
      operation(() => real.batch(list.map((s) => statements.get(s) ?? s))),
    exec: (query: string) => operation(() => real.exec(query)),
    withSession: () => {
      throw new Error("not used by the relay");
    },
    dump: () => real.dump(),
  } as D1Database;
}

/** Runs one step as one worker invocation, to its end (after-the-response work included) or its death. */
async function invoke(
  dieAt: number | undefined,
  work: (bindings: Cloudflare.Env, execution: ExecutionContext) => Promise<unknown>,
) {
  let died!: () => void;
  const dead = new Promise<"died">((resolve) => {
    died = () => resolve("died");
  });
  const bindings = { ...modelEnv, DB: workerDb(dieAt, died) };
  const execution = createExecutionContext();
  const finished = (async () => {
    await work(bindings, execution);
    await waitOnExecutionContext(execution);
    return "finished" as const;
  })();
  const outcome = await Promise.race([finished, dead]);
  if (outcome === "died") {
    // Let what the dead worker had already sent arrive while it is still the current worker (and is
    // refused as a dead worker's), before the next step starts.
    while (world.worker.inFlight > 0) await new Promise((resolve) => setTimeout(resolve, 1));
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return outcome;
}

function services(bindings: Cloudflare.Env, execution: ExecutionContext) {
  return createServiceContext(bindings, execution, { now: () => new Date(world.now), log: quiet });
}

// --- Running a history ---------------------------------------------------------------------------

async function create(tenant: Tenant, h: History, key: string, dieAt: number | undefined) {
  const request = RunRequestSchema.parse({
    processor: "base",
    input: "What was the GDP of France in 2023?",
    ...(h.withCallback ? { callback: { url: RECEIVER } } : {}),
  });
  return invoke(dieAt, (bindings, execution) =>
    createRun(services(bindings, execution), {
      apiKeyId: tenant.id,
      request,
      idempotencyKey: h.withKey ? key : undefined,
    }),
  );
}

async function webhook(s: Extract<Step, { kind: "webhook" }>, sent: Map<string, number>) {
  const target = world.parallelRuns[s.parallelRun % Math.max(1, world.parallelRuns.length)];
  if (!target) return "no Parallel run yet";
  // Parallel retries a webhook under its id; `freshId` is another event for the same status.
  const resend = (sent.get(target.id) ?? 0) + (s.freshId ? 1 : 0);
  sent.set(target.id, resend);
  const body = webhookBody({ run_id: target.id, status: world.history.outcome, metadata: target.metadata });
  return invoke(s.die, (bindings, execution) =>
    receiveParallelWebhook(services(bindings, execution), { id: `whevent_${target.id}_${resend}`, body }),
  );
}

async function tick(dieAt: number | undefined) {
  ticksTotal++;
  const controller = {
    scheduledTime: world.now,
    cron: "* * * * *",
    noRetry: () => {},
  } as ScheduledController;
  // One step is the cron tick and then the queue consumer working what it sent (and any delayed
  // follow-up now due), on one worker's D1: a death at its k-th operation cuts either part.
  const captured = capturingQueue();
  return invoke(dieAt, async (bindings, execution) => {
    const withQueue = { ...bindings, WORK_QUEUE: captured.queue, DELIVERY_QUEUE: captured.queue };
    await worker.scheduled(controller, withQueue, execution);
    const due = world.delayed.filter((d) => d.at <= world.now);
    world.delayed = world.delayed.filter((d) => d.at > world.now);
    const messages = [...captured.take().map((m) => m.body), ...due.map((d) => d.body)];
    await consume(messages, { env: withQueue, now: () => new Date(world.now), queue: captured.queue });
    for (const m of captured.take())
      world.delayed.push({ at: world.now + m.delaySeconds * 1000, body: m.body });
  });
}

/** When the sweeper next has something to do (a due run or delivery, once its lease is over). */
async function nextDue(): Promise<number | null> {
  const row = await env.DB.prepare(
    `SELECT MIN(t) AS t FROM (
       SELECT MAX(next_sweep_at, COALESCE(lease_until, '')) AS t FROM runs WHERE next_sweep_at IS NOT NULL
       UNION ALL
       SELECT MAX(next_attempt_at, COALESCE(lease_until, '')) FROM deliveries WHERE status = 'pending')`,
  ).first<{ t: string | null }>();
  return row?.t ? Date.parse(row.t) : null;
}

async function live(tenant: Tenant, h: History, key: string): Promise<string[]> {
  const trace: string[] = [];
  const t0 = Date.now();
  const push = trace.push.bind(trace);
  trace.push = (...items: string[]) => push(...items.map((i) => `${i} (${Date.now() - t0} ms)`));
  const sent = new Map<string, number>();
  trace.push(`create: ${await create(tenant, h, key, h.firstCreateDies)}`);
  for (const s of h.steps) {
    if (s.kind === "wait") {
      world.now += s.ms;
      trace.push(`wait ${s.ms} ms`);
    } else if (s.kind === "tick") trace.push(`tick: ${await tick(s.die)}`);
    else if (s.kind === "webhook") trace.push(`webhook: ${await webhook(s, sent)}`);
    else if (h.withKey) trace.push(`create again: ${await create(tenant, h, key, s.die)}`);
  }
  // The client that never got an answer asks again (with its key; without one it cannot know).
  const stored = h.withKey
    ? await env.DB.prepare("SELECT COUNT(*) AS n FROM runs").first<{ n: number }>()
    : null;
  if (stored?.n === 0) trace.push(`create, last try: ${await create(tenant, h, key, undefined)}`);
  // Then time runs on, and the sweeper works until nothing is left due.
  for (let i = 0; i < 40; i++) {
    const rows = await nextDue();
    const delayed = world.delayed.map((d) => d.at);
    const due = rows === null && delayed.length === 0 ? null : Math.min(rows ?? Infinity, ...delayed);
    if (due === null) return trace;
    world.now = Math.max(world.now, due) + 1;
    trace.push(`settle tick: ${await tick(undefined)}`);
  }
  throw new Error(`work still due after 40 ticks:\n${trace.join("\n")}`);
}

// --- The invariants ------------------------------------------------------------------------------

interface RunRow {
  id: string;
  status: string;
  output: string | null;
  result_stored_at: string | null;
  next_sweep_at: string | null;
}

async function checkInvariants(h: History, trace: string[]) {
  const says = (what: string) => `${what}\n${trace.join("\n")}`;
  // Each history starts on empty tables: everything there is this history's, read in one batch.
  const [runRows, deliveryRows, attemptRows] = await env.DB.batch([
    env.DB.prepare("SELECT * FROM runs"),
    env.DB.prepare("SELECT * FROM deliveries"),
    env.DB.prepare(
      "SELECT delivery_id, attempt, status_code FROM delivery_attempts ORDER BY delivery_id, series, attempt",
    ),
  ]);
  const runs = (runRows?.results ?? []) as unknown as RunRow[];
  // Each run's timeline: its row's events, then any overflow rows (db/run-events.ts).
  const eventsOf = new Map<string, Array<{ kind: string; detail: Record<string, unknown> | null }>>();
  for (const run of runs)
    eventsOf.set(run.id, await listRunEvents(env.DB, run.id, { afterId: 0, limit: 100_000 }));
  const expectedRuns = runs.length === 0 && world.parallelRuns.length === 0 && !h.withKey ? 0 : 1;
  expect(runs.length, says("one run per history (a retried create is a replay)")).toBe(expectedRuns);
  for (const run of runs) {
    const details: Array<{ kind: string; to?: string; source?: string }> = (eventsOf.get(run.id) ?? []).map(
      (e) => ({
        kind: e.kind,
        ...(e.detail ?? {}),
      }),
    );
    const terminalMoves = details.filter(
      (e) => e.kind === "status_changed" && (TERMINAL_STATUSES as readonly string[]).includes(e.to ?? ""),
    );

    // Every run reaches exactly one terminal state: Parallel's, reached once.
    expect(run.status, says("the run ends in Parallel's terminal state")).toBe(h.outcome);
    expect(terminalMoves, says("one move to a terminal state")).toHaveLength(1);
    expect(run.next_sweep_at, says("nothing left due")).toBeNull();

    // A completed run's result is stored once.
    const fetched = details.filter((e) => e.kind === "result_fetched");
    if (h.outcome === "completed") {
      expect(run.result_stored_at, says("result stored")).not.toBeNull();
      expect(JSON.parse(run.output ?? "null"), says("the result Parallel gave")).toEqual(JSON_OUTPUT);
    }
    expect(fetched, says("result stored once")).toHaveLength(h.outcome === "completed" ? 1 : 0);

    // Exactly one delivery series per (run, event), ending succeeded or dead.
    const deliveries = (
      (deliveryRows?.results ?? []) as Array<{
        id: string;
        run_id: string;
        event: string;
        status: string;
        series: number;
        attempt_count: number;
      }>
    ).filter((d) => d.run_id === run.id);
    expect(deliveries, says("one delivery with a callback, none without")).toHaveLength(
      h.withCallback ? 1 : 0,
    );
    for (const delivery of deliveries) {
      expect(delivery.event).toBe(h.outcome === "completed" ? "run.completed" : "run.failed");
      expect(delivery.series, says("one series")).toBe(1);
      expect(["succeeded", "dead"], says(`delivery ends succeeded or dead, is ${delivery.status}`)).toContain(
        delivery.status,
      );
      const attempts = (
        (attemptRows?.results ?? []) as Array<{
          delivery_id: string;
          attempt: number;
          status_code: number | null;
        }>
      ).filter((a) => a.delivery_id === delivery.id);
      expect(
        attempts.map((a) => a.attempt),
        says("attempts numbered 1..n"),
      ).toEqual(Array.from({ length: delivery.attempt_count }, (_, i) => i + 1));
      const last = attempts.at(-1)?.status_code;
      if (delivery.status === "succeeded") expect(last, says("succeeded on a 2xx")).toBe(204);
      else expect(last === 410 || attempts.length === 8, says(`dead after 410 or 8 attempts`)).toBe(true);
      // Every callback the receiver saw is this delivery (one webhook-id), taken at most once more
      // than a worker died after the receiver answered.
      expect(new Set(world.posts.map((p) => p.webhookId)), says("one webhook-id")).toEqual(
        new Set([delivery.id]),
      );
      const taken = world.posts.filter((p) => p.status === 204).length;
      if (delivery.status === "succeeded") expect(taken, says("the callback was taken")).toBeGreaterThan(0);
      else expect(taken, says("a dead delivery was never taken")).toBe(0);
      expect(taken, says("callbacks taken")).toBeLessThanOrEqual(
        (delivery.status === "succeeded" ? 1 : 0) + world.lost.post,
      );
    }

    // No Parallel call beyond the path's bound: the create and the result (2); the poll too when no
    // webhook told the relay (3); plus one per answer a dying worker lost.
    const learnedByWebhook = terminalMoves[0]?.source === "webhook";
    const bound = {
      create: 1 + world.lost.create,
      get: (learnedByWebhook ? 0 : 1) + world.lost.get,
      result: (h.outcome === "completed" ? 1 : 0) + world.lost.result,
    };
    expect(world.answered.create, says("creates")).toBeLessThanOrEqual(bound.create);
    expect(world.answered.get, says("polls")).toBeLessThanOrEqual(bound.get);
    expect(world.answered.result, says("results")).toBeLessThanOrEqual(bound.result);
  }
}

// --- The property --------------------------------------------------------------------------------

describe("a run's life, as a model", () => {
  let tenant: Tenant;
  beforeAll(async () => {
    tenant = await createTenant("model");
  });

  it(
    `keeps its invariants over ${numRuns} random histories`,
    async () => {
      // The 161 s wait of a history is past the first poll: a webhook after it is late.
      expect(firstPollAt(config, "base", new Date(0)).getTime()).toBeLessThan(161_000);
      installWorld();
      let n = 0;
      const started = Date.now();
      await fc.assert(
        fc.asyncProperty(history, async (h) => {
          await env.DB.batch(
            ["delivery_attempts", "deliveries", "run_events", "webhook_events", "runs"].map((t) =>
              env.DB.prepare(`DELETE FROM ${t}`),
            ),
          );
          world = {
            history: h,
            parallelRuns: [],
            answered: counts(),
            failed: counts(),
            posts: [],
            unrecorded: null,
            lost: counts(),
            worker: { dead: false, inFlight: 0 },
            delayed: [],
            now: Date.now(),
          };
          const trace = await live(tenant, h, `model-${n++}`);
          await checkInvariants(h, trace);
        }),
        {
          numRuns,
          ...(seed === undefined ? {} : { seed }),
          ...(env.MODEL_PATH ? { path: env.MODEL_PATH } : {}),
        },
      );
      console.info(
        `run model: ${numRuns} histories in ${Date.now() - started} ms; ops ${opsTotal}, ticks ${ticksTotal}`,
      );
    },
    3 * HOUR,
  );
});
