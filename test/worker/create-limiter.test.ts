// The create limiter (src/limiter/): the real Durable Object, asked over RPC as the Worker asks
// it. The schedule's own tests drive it on a fake clock (the `nowMs` argument) and replay every
// grant's go time through the simulator's own rate limiter (sim/rate-limit.ts, Parallel's sliding
// 60 s window), so "no 429 at Parallel" is checked by the code that would send the 429. The flow
// tests go through the Worker's fetch handler and the queue consumer on the object's real clock.
import { createExecutionContext, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { beforeEach, describe, expect, it } from "vitest";
import { SlidingWindowLimiter } from "../../sim/rate-limit";
import { listRunEvents } from "../../src/db/run-events";
import { findRun } from "../../src/db/runs";
import worker from "../../src/index";
import { CreateLimiter } from "../../src/limiter/create-limiter";
import { type Admission, LIGHT_HOLD_MS, rateOf } from "../../src/limiter/fair-schedule";
import { ScheduleCreateSchema } from "../../src/schemas/schedules";
import { acquireCreateSlot } from "../../src/services/batch-submission";
import { createServiceContext } from "../../src/services/context";
import { createSchedule } from "../../src/services/schedules";
import { createTenant, emptyBackgroundWork, expectJson, RELAY, TEXT_RUN, taskRun } from "./harness";
import { tickAndWork } from "./queue-harness";
import { network } from "./setup";

let instances = 0;
/** A limiter of its own per test (the Worker's is one named instance; these share nothing with it). */
const freshLimiter = () => env.CREATE_LIMITER.getByName(`test-limiter-${++instances}`);
/** The object's acquire: over RPC from the test, or called inside the object (runInDurableObject). */
interface Acquire {
  acquire(keyId: string, cost: number, limit: number, nowMs: number): Admission | Promise<Admission>;
}
/**
 * Runs `body` inside a fresh limiter object, calling it directly: the same object and code, without
 * an RPC round trip per ask (tens of thousands of asks would take minutes on a loaded machine).
 */
const insideFreshLimiter = <T>(body: (limiter: CreateLimiter) => Promise<T>): Promise<T> =>
  runInDurableObject(freshLimiter(), (instance: CreateLimiter) => body(instance));

const STEP_MS = 50;

interface Ask {
  key: string;
  atMs: number;
}
interface Grant {
  key: string;
  askedMs: number;
  goMs: number;
  refusals: number;
}

/**
 * Drives `asks` through the limiter on a fake clock: every ask due at the same moment is sent at
 * once (in parallel, as concurrent invocations would), a refused ask comes back at its retry time,
 * and each grant is recorded with the moment its create would leave.
 */
async function drive(limiter: Acquire, asks: Ask[], limit: number, untilMs = Number.POSITIVE_INFINITY) {
  const grants: Grant[] = [];
  let pending = asks.map((ask) => ({ ...ask, askedMs: ask.atMs, refusals: 0 }));
  while (pending.length > 0) {
    // Asks due within the same 50 ms go together, at its end (a little after they were told to).
    const now = Math.ceil(Math.min(...pending.map((a) => a.atMs)) / STEP_MS) * STEP_MS;
    if (now > untilMs) break;
    const due = pending.filter((a) => a.atMs <= now);
    pending = pending.filter((a) => a.atMs > now);
    const answers: Admission[] = await Promise.all(due.map((a) => limiter.acquire(a.key, 1, limit, now)));
    for (const [index, answer] of answers.entries()) {
      const ask = due[index] as (typeof due)[number];
      if (answer.granted) {
        grants.push({
          key: ask.key,
          askedMs: ask.askedMs,
          goMs: now + answer.waitMs,
          refusals: ask.refusals,
        });
      } else {
        pending.push({ ...ask, atMs: now + answer.retryInMs, refusals: ask.refusals + 1 });
      }
    }
  }
  return grants.sort((a, b) => a.goMs - b.goMs);
}

/** How many of `grants` Parallel's sliding window (the simulator's own code) would refuse with a 429. */
function refusedByParallel(grants: Grant[], limit: number): number {
  const window = new SlidingWindowLimiter();
  return grants.filter((g) => !window.take(g.goMs, limit).allowed).length;
}

/** The most grants that leave within any 60 s. */
function busiestMinute(grants: Grant[]): number {
  let most = 0;
  let start = 0;
  for (let end = 0; end < grants.length; end++) {
    while ((grants[end]?.goMs ?? 0) - (grants[start]?.goMs ?? 0) >= 60_000) start++;
    most = Math.max(most, end - start + 1);
  }
  return most;
}

const T0 = Date.parse("2026-12-01T12:00:00Z");

describe("the create limiter's schedule", { timeout: 300_000 }, () => {
  it("grants 3,000 concurrent creates from 30 keys at most the limit in any minute, none refused by Parallel's window", async () => {
    const limit = 2000;
    const asks = Array.from({ length: 3000 }, (_, i) => ({ key: `key-${i % 30}`, atMs: T0 }));
    const grants = await drive(freshLimiter(), asks, limit);

    expect(grants).toHaveLength(3000);
    expect(busiestMinute(grants)).toBeLessThanOrEqual(limit);
    expect(refusedByParallel(grants, limit)).toBe(0);
    // Not idle either: the first minute carries most of the limit (the spare second and the burst aside).
    expect(grants.filter((g) => g.goMs < T0 + 60_000).length).toBeGreaterThan(limit * 0.95);
  });

  it("fails without the schedule's spacing: the same creates sent as asked exceed Parallel's window", () => {
    // The check above can fail: 3,000 creates leaving at once are mostly 429s in the simulator's window.
    const unlimited = Array.from({ length: 3000 }, () => ({ key: "k", askedMs: T0, goMs: T0, refusals: 0 }));
    expect(refusedByParallel(unlimited, 2000)).toBe(1000);
  });

  it("gives a light key's create a slot within one interval while another key has 10,000 waiting", async () => {
    const limit = 2000;
    const { interval } = rateOf(limit);
    const backlog = Array.from({ length: 10_000 }, () => ({ key: "heavy", atMs: T0 }));
    // One create a second from another key for two minutes, from the moment the backlog's first
    // grants (taken before it had a backlog, up to LIGHT_HOLD_MS ahead) have left.
    const singles = Array.from({ length: 120 }, (_, i) => ({
      key: "light",
      atMs: T0 + LIGHT_HOLD_MS + i * 1000,
    }));
    const grants = await insideFreshLimiter((limiter) =>
      drive(limiter, [...backlog, ...singles], limit, T0 + 125_000),
    );

    const light = grants.filter((g) => g.key === "light");
    expect(light).toHaveLength(120);
    expect(light.every((g) => g.refusals === 0)).toBe(true);
    // The backlog keeps the schedule at most SHARE_HOLD_MS ahead (HEAVY_HOLD_MS once over its
    // share), but short of the front, which is the light key's: it waits at most one interval.
    const waits = light.map((g) => g.goMs - g.askedMs);
    expect(Math.max(...waits)).toBeLessThanOrEqual(interval);
    // The heavy key takes every slot the light one leaves: nothing idles, nothing over the limit.
    const firstTwoMinutes = grants.filter((g) => g.goMs < T0 + 120_000);
    expect(firstTwoMinutes.length).toBeGreaterThan(2 * limit * 0.95);
    expect(busiestMinute(grants)).toBeLessThanOrEqual(limit);
    expect(refusedByParallel(grants, limit)).toBe(0);
  });

  it("shares the limit between two keys with backlogs, whoever asked first", async () => {
    const limit = 600;
    const early = Array.from({ length: 3000 }, () => ({ key: "early", atMs: T0 }));
    const late = Array.from({ length: 3000 }, () => ({ key: "late", atMs: T0 + 30_000 }));
    const grants = await insideFreshLimiter((limiter) =>
      drive(limiter, [...early, ...late], limit, T0 + 150_000),
    );
    // From the minute after the late key arrived, each key gets about half.
    const minute = grants.filter((g) => g.goMs >= T0 + 90_000 && g.goMs < T0 + 150_000);
    const lateShare = minute.filter((g) => g.key === "late").length / minute.length;
    expect(lateShare).toBeGreaterThan(0.4);
    expect(lateShare).toBeLessThan(0.6);
    expect(refusedByParallel(grants, limit)).toBe(0);
  });

  it("keeps the limit across a restart of the object: the next free slot is in its storage", async () => {
    const limit = 120;
    const { burst } = rateOf(limit);
    const limiter = freshLimiter();
    const now = Date.now();
    for (let i = 0; i < burst + 5; i++) await limiter.acquire("k", 1, limit, now);
    await runInDurableObject(limiter, (_instance: CreateLimiter, state) => {
      // A new instance on the same storage, as after an eviction or a deploy.
      const restarted = new CreateLimiter(state, env);
      const answer = restarted.acquire("k", 1, limit, now);
      // Without the stored slot the restarted object would grant this at once (a fresh burst).
      expect(answer.granted ? answer.waitMs : Number.POSITIVE_INFINITY).toBeGreaterThan(1000);
    });
  });
});

/** A stand-in for Parallel that enforces Parallel's create limit with the simulator's own code. */
function parallelWithRateLimit(limit: number) {
  const window = new SlidingWindowLimiter();
  const seen = { creates: 0, refused: 0 };
  network.use(
    http.post("https://parallel.test/v1/tasks/runs", async ({ request }) => {
      seen.creates++;
      if (!window.take(Date.now(), limit).allowed) {
        seen.refused++;
        return HttpResponse.json({ error: { message: "Too many requests" } }, { status: 429 });
      }
      const body = (await request.json()) as { processor: string; metadata: Record<string, unknown> };
      return HttpResponse.json(taskRun({ processor: body.processor, metadata: body.metadata }), {
        status: 202,
      });
    }),
  );
  return seen;
}

/** POST /v1/runs through the Worker's fetch handler on `bindings`, with its after-the-response work. */
async function create(bindings: Cloudflare.Env, auth: { authorization: string }, input: string) {
  const ctx = createExecutionContext();
  const response = await worker.fetch(
    new Request(`${RELAY}/v1/runs`, {
      method: "POST",
      headers: { "content-type": "application/json", ...auth },
      body: JSON.stringify({ ...TEXT_RUN, input }),
    }),
    bindings,
    ctx,
  );
  return { response, settled: waitOnExecutionContext(ctx) };
}

describe("creates over the limit", { timeout: 60_000 }, () => {
  beforeEach(emptyBackgroundWork);

  it("are accepted 202 and submitted later by background work, with no 429 from Parallel", async () => {
    // 60 a minute: a slot about every second, a burst of one.
    const limit = 60;
    const bindings = { ...env, PARALLEL_CREATE_LIMIT_PER_MINUTE: String(limit) };
    const parallel = parallelWithRateLimit(limit);
    const tenant = await createTenant("over-the-limit");

    // Five at once, for slots about a second apart.
    const made = await Promise.all(
      Array.from({ length: 5 }, (_, i) => create(bindings, tenant.auth, `Over the limit ${i}`)),
    );
    const bodies = await Promise.all(
      made.map(({ response }) => expectJson<{ id: string; status: string }>(response, 202)),
    );
    // Every one accepted: the one with a slot at once is at Parallel, the rest stored `submitting`.
    expect(bodies.filter((b) => b.status === "queued").length).toBeGreaterThanOrEqual(1);
    expect(bodies.filter((b) => b.status === "submitting").length).toBeGreaterThanOrEqual(3);
    expect(bodies.every((b) => ["queued", "submitting"].includes(b.status))).toBe(true);
    await Promise.all(made.map(({ settled }) => settled));

    const runs = async () => Promise.all(bodies.map((b) => findRun(env.DB, b.id)));
    // A slot within the hold was waited for after the response; the others were deferred to the sweeper.
    const deferred = (await runs()).filter((r) => r?.status === "submitting");
    expect(deferred.length).toBeGreaterThan(0);
    for (const run of deferred) {
      expect(run?.attempts).toBe(0);
      expect(run?.lease_until).toBeNull();
      expect(run?.next_sweep_at).not.toBeNull();
    }
    const events = await listRunEvents(env.DB, deferred[0]?.id ?? "", { afterId: 0, limit: 1000 });
    expect(events.find((e) => e.kind === "submit_retry_scheduled")?.detail).toMatchObject({
      reason: "create_limit",
    });

    // The sweeper's resubmit_runs creates each once its time has come (the limiter's clock is real).
    for (let tick = 0; tick < 20; tick++) {
      const waiting = (await runs()).filter((r) => r?.status === "submitting");
      if (waiting.length === 0) break;
      const due = Math.min(...waiting.map((r) => Date.parse(r?.next_sweep_at ?? "")));
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - Date.now())));
      await tickAndWork(new Date(), { env: bindings });
    }
    expect((await runs()).map((r) => r?.status)).toEqual(Array(5).fill("queued"));
    expect(parallel).toEqual({ creates: 5, refused: 0 });
  });

  it("fire schedule occurrences over the limit: each occurrence has its run, sent when its turn comes", async () => {
    const limit = 60;
    const bindings = { ...env, PARALLEL_CREATE_LIMIT_PER_MINUTE: String(limit) };
    const parallel = parallelWithRateLimit(limit);
    const tenant = await createTenant("schedules-over-the-limit");
    // Four every-minute schedules made two minutes ago: all due now, on the limiter's (real) clock.
    const madeAt = new Date(Date.now() - 120_000);
    const ctx = createServiceContext(env, createExecutionContext(), { now: () => madeAt });
    for (let i = 0; i < 4; i++) {
      await createSchedule(
        ctx,
        tenant.id,
        ScheduleCreateSchema.parse({
          name: `busy ${i}`,
          cron: "* * * * *",
          timezone: "UTC",
          template: { processor: "base", input: `What changed? ${i}` },
        }),
      );
    }
    const fired = await tickAndWork(new Date(), { env: bindings });
    expect(fired.summaries.fire_schedules).toMatchObject({ fired: 4 });
    const runs = () =>
      env.DB.prepare("SELECT status FROM runs WHERE api_key_id = ?")
        .bind(tenant.id)
        .all<{ status: string }>();
    expect((await runs()).results.some((r) => r.status === "submitting")).toBe(true);

    for (let tick = 0; tick < 20; tick++) {
      if ((await runs()).results.every((r) => r.status === "queued")) break;
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      await tickAndWork(new Date(), { env: bindings });
    }
    expect((await runs()).results.map((r) => r.status)).toEqual(Array(4).fill("queued"));
    expect(parallel).toEqual({ creates: 4, refused: 0 });
  });

  it("fails without the limiter: the same creates against a stand-in at the same limit get a 429", async () => {
    // The stand-in above can refuse: four creates within a second at 1 a second are three 429s.
    const limit = 60;
    const parallel = parallelWithRateLimit(1);
    const bindings = { ...env, PARALLEL_CREATE_LIMIT_PER_MINUTE: String(limit * 1000) };
    const tenant = await createTenant("no-limit");
    for (let i = 0; i < 4; i++) {
      const { response, settled } = await create(bindings, tenant.auth, `Unlimited ${i}`);
      await expectJson(response, 202);
      await settled;
    }
    expect(parallel).toEqual({ creates: 4, refused: 3 });
  });
});

// Last in the file: it takes slots of the Worker's limiter at 60 a minute, which the tests above use.
describe("a batch's add-runs calls", () => {
  it("each ask the limiter for a slot: over the limit one is told to come back later", async () => {
    const bindings = { ...env, PARALLEL_CREATE_LIMIT_PER_MINUTE: "60" };
    const ctx = createServiceContext(bindings, createExecutionContext());
    const tenant = await createTenant("batch-chunks");
    // From an idle limiter: the tests above (and any background work they left) may hold slots
    // ahead of now, which would refuse all three. Take one slot (waiting as told), then let its second pass.
    for (let probe = 0; probe < 20; probe++) {
      const answer = await acquireCreateSlot(ctx, tenant.id);
      if (answer.ok) break;
      await new Promise((resolve) => setTimeout(resolve, answer.retryAt.getTime() - Date.now()));
    }
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const asked = Date.now();
    // Three chunks at once at a slot a second: the light hold (1 s) cannot cover them all.
    const answers = await Promise.all([0, 1, 2].map(() => acquireCreateSlot(ctx, tenant.id)));
    expect(answers.filter((a) => a.ok).length).toBeGreaterThanOrEqual(1);
    const refused = answers.filter((a) => !a.ok);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    for (const answer of refused) expect(answer.retryAt.getTime()).toBeGreaterThan(asked);
  }, 30_000);
});
