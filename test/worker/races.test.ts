// Same-moment paths, made to overlap on purpose: each test holds one side at a real boundary (a D1
// read, Parallel's /result or create, the callback receiver) until the other side has made its
// claim, then checks that exactly one side did the work and the other did nothing. Each fails when
// the guard it names is removed (how that was checked: docs/architecture.md, Testing).
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { HttpResponse } from "msw";
import { beforeEach, describe, expect, it } from "vitest";
import { listRunEvents } from "../../src/db/run-events";
import { readConfig } from "../../src/env";
import worker from "../../src/index";
import { ScheduleCreateSchema } from "../../src/schemas/schedules";
import { startRunDelivery } from "../../src/services/deliveries";
import { createSchedule } from "../../src/services/schedules";
import { firstPollAt } from "../../src/services/timing";
import {
  attemptsOf,
  deliveriesOf,
  deliveryContext,
  fakeReceiver,
  storeFinishedRun,
} from "./delivery-harness";
import {
  createTenant,
  emptyBackgroundWork,
  expectJson,
  fakeParallel,
  RELAY,
  resultReply,
  signWebhook,
  TEXT_RUN,
  type Tenant,
  taskRun,
  webhookBody,
} from "./harness";
import { tickAndWork } from "./queue-harness";

const config = readConfig(env);

/** A door a held response waits behind, and a way to learn that something reached it. */
function hold() {
  let release!: () => void;
  let reached!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const arrived = new Promise<void>((resolve) => {
    reached = resolve;
  });
  return { release, released, reached, arrived };
}

/** A request through the Worker's real fetch handler, on `bindings`, with its after-the-response work. */
async function send(path: string, init: RequestInit, bindings: Cloudflare.Env = env) {
  const ctx = createExecutionContext();
  const response = await worker.fetch(new Request(`${RELAY}${path}`, init), bindings, ctx);
  return { response, settled: waitOnExecutionContext(ctx) };
}

/** A cron tick at `at`, then the queue consumer working what it sent: per job, claimed and outcomes. */
async function tick(at: Date) {
  return (await tickAndWork(at)).summaries;
}

async function postWebhook(parallelRunId: string) {
  const body = webhookBody({ run_id: parallelRunId, status: "completed" });
  return send("/webhooks/parallel", { method: "POST", headers: signWebhook(body), body });
}

async function timeline(runId: string): Promise<Array<{ kind: string; detail: Record<string, unknown> }>> {
  const events = await listRunEvents(env.DB, runId, { afterId: 0, limit: 100_000 });
  return events.map((e) => ({ kind: e.kind, detail: e.detail ?? {} }));
}

const parallelIdOf = (path: string) => path.split("/")[4] ?? "";

/**
 * D1 with the idempotency lookup held until `parties` lookups have been made: every request then
 * looks before any inserts, which is the moment two identical creates meet in production.
 */
function lookupsMeet(db: D1Database, parties: number) {
  const meeting = hold();
  const found: boolean[] = [];
  const held = (statement: D1PreparedStatement): D1PreparedStatement =>
    new Proxy(statement, {
      get(target, property) {
        if (property === "bind") return (...values: unknown[]) => held(target.bind(...values));
        if (property === "all") {
          return async () => {
            if (found.length < parties) {
              found.push(false);
              if (found.length === parties) meeting.release();
              await meeting.released;
              const result = await target.all();
              found[found.indexOf(false)] = result.results.length > 0;
              return result;
            }
            return target.all();
          };
        }
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  const gated = new Proxy(db, {
    get(target, property) {
      if (property === "prepare") {
        return (sql: string) => {
          const statement = target.prepare(sql);
          return sql.includes("idempotency_key = ?") ? held(statement) : statement;
        };
      }
      const value = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { db: gated, found };
}

beforeEach(emptyBackgroundWork);

describe("two identical creates at once", () => {
  it("make one run: the others are replays of it, none a 500", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const parties = 5;
    const { db, found } = lookupsMeet(env.DB, parties);
    const headers = { ...tenant.auth, "content-type": "application/json", "idempotency-key": "same-moment" };
    const answers = await Promise.all(
      Array.from({ length: parties }, async () => {
        const { response, settled } = await send(
          "/v1/runs",
          { method: "POST", headers, body: JSON.stringify(TEXT_RUN) },
          { ...env, DB: db },
        );
        await settled;
        return {
          status: response.status,
          replayed: response.headers.get("idempotent-replayed"),
          body: await response.text(),
        };
      }),
    );
    // The race happened: every request looked before any had inserted.
    expect(found).toEqual(Array(parties).fill(false));
    expect(answers.map((a) => a.status)).toEqual(Array(parties).fill(202));
    const ids = new Set(answers.map((a) => (JSON.parse(a.body) as { id: string }).id));
    expect(ids.size).toBe(1);
    expect(answers.filter((a) => a.replayed === "true")).toHaveLength(parties - 1);
    expect(parallel.creates()).toHaveLength(1);
    const stored = await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE api_key_id = ?")
      .bind(tenant.id)
      .first<{ n: number }>();
    expect(stored?.n).toBe(1);
  });
});

describe("the idempotency hash ignores key order at every level", () => {
  const schema = {
    type: "object",
    properties: { gdp: { type: "string", description: "in USD" }, year: { type: "integer" } },
    required: ["gdp", "year"],
    additionalProperties: false,
  };
  const first = {
    processor: "base",
    input: { country: "France", detail: { year: 2023, unit: "USD" } },
    task_spec: { output_schema: { type: "json", json_schema: schema } },
    metadata: { customer: "acme", order: "4711" },
  };
  const reversed = <T extends Record<string, unknown>>(value: T): T =>
    Object.fromEntries(Object.entries(value).reverse()) as T;
  const cases: Array<[string, Record<string, unknown>]> = [
    ["the top level", reversed(first)],
    ["input", { ...first, input: reversed({ ...first.input, detail: reversed(first.input.detail) }) }],
    [
      "task_spec (inside json_schema)",
      {
        ...first,
        task_spec: {
          output_schema: {
            type: "json",
            json_schema: reversed({
              ...schema,
              properties: reversed({ ...schema.properties, gdp: reversed(schema.properties.gdp) }),
            }),
          },
        },
      },
    ],
    ["metadata", { ...first, metadata: reversed(first.metadata) }],
  ];

  it.each(cases)("%s: the same request in another key order is a replay", async (level, again) => {
    expect(JSON.stringify(again), "the case reorders something").not.toBe(JSON.stringify(first));
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const headers = {
      ...tenant.auth,
      "content-type": "application/json",
      "idempotency-key": `order-${level}`,
    };
    const one = await send("/v1/runs", { method: "POST", headers, body: JSON.stringify(first) });
    const made = await expectJson<{ id: string }>(one.response, 202);
    const two = await send("/v1/runs", { method: "POST", headers, body: JSON.stringify(again) });
    const replayed = await expectJson<{ id: string }>(two.response, 202);
    expect(two.response.headers.get("idempotent-replayed")).toBe("true");
    expect(replayed.id).toBe(made.id);
    expect(parallel.creates()).toHaveLength(1);
  });

  it("a different nested value is still a conflict", async () => {
    const tenant = await createTenant();
    fakeParallel();
    const headers = { ...tenant.auth, "content-type": "application/json", "idempotency-key": "nested-value" };
    await expectJson(
      (await send("/v1/runs", { method: "POST", headers, body: JSON.stringify(first) })).response,
      202,
    );
    const other = { ...first, input: { ...first.input, detail: { ...first.input.detail, year: 2024 } } };
    const body = await expectJson<{ error: { code: string } }>(
      (await send("/v1/runs", { method: "POST", headers, body: JSON.stringify(other) })).response,
      409,
    );
    expect(body.error.code).toBe("idempotency_conflict");
  });
});

describe("a webhook and the sweeper on one completed run", () => {
  async function queuedRun(tenant: Tenant) {
    return expectJson<{ id: string; parallel_run_id: string }>(
      (
        await send("/v1/runs", {
          method: "POST",
          headers: { ...tenant.auth, "content-type": "application/json" },
          body: JSON.stringify(TEXT_RUN),
        })
      ).response,
      202,
    );
  }

  it("the poll fetches; a webhook arriving while its /result is open does nothing", async () => {
    const tenant = await createTenant();
    const firstResult = hold();
    let results = 0;
    const parallel = fakeParallel({
      retrieve: (call) =>
        HttpResponse.json(
          taskRun({ run_id: parallelIdOf(call.path), status: "completed", is_active: false }),
        ),
      result: async (call) => {
        results++;
        if (results === 1) {
          firstResult.reached();
          await firstResult.released;
        }
        return resultReply(parallelIdOf(call.path));
      },
    });
    const run = await queuedRun(tenant);
    const polling = tick(firstPollAt(config, "base", new Date(Date.now() + 1000)));
    await firstResult.arrived; // the poller holds the run and is fetching its result
    const webhook = await postWebhook(run.parallel_run_id);
    const receipt = await expectJson<{ outcome: string }>(webhook.response, 200);
    firstResult.release();
    const [summary] = await Promise.all([polling, webhook.settled]);

    expect(summary.poll_runs).toMatchObject({ claimed: 1, finished: 1 });
    expect(receipt.outcome).toBe("already_applied");
    expect(parallel.calls.filter((c) => c.path.endsWith("/result"))).toHaveLength(1);
    const events = await timeline(run.id);
    expect(events.filter((e) => e.kind === "result_fetched")).toHaveLength(1);
    expect(events.filter((e) => e.kind === "status_changed").map((e) => e.detail.source)).toEqual(["poll"]);
    expect(events.filter((e) => e.kind === "webhook_received")).toHaveLength(1);
  });

  it("the webhook fetches; a tick while its /result is open claims nothing", async () => {
    const tenant = await createTenant();
    const firstResult = hold();
    let results = 0;
    const parallel = fakeParallel({
      result: async (call) => {
        results++;
        if (results === 1) {
          firstResult.reached();
          await firstResult.released;
        }
        return resultReply(parallelIdOf(call.path));
      },
    });
    const run = await queuedRun(tenant);
    const webhook = await postWebhook(run.parallel_run_id);
    expect(await expectJson<{ outcome: string }>(webhook.response, 200)).toMatchObject({
      outcome: "applied",
    });
    await firstResult.arrived; // the webhook's fetch after the response holds the run
    const summary = await tick(new Date(Date.now() + 1000));
    firstResult.release();
    await webhook.settled;

    expect(summary.fetch_results).toMatchObject({ claimed: 0 });
    expect(summary.poll_runs).toMatchObject({ claimed: 0 });
    expect(parallel.calls.filter((c) => c.path.endsWith("/result"))).toHaveLength(1);
    expect((await timeline(run.id)).filter((e) => e.kind === "result_fetched")).toHaveLength(1);
  });
});

describe("two ticks at once", () => {
  it("one delivery: the tick holding it sends it, the other claims nothing", async () => {
    const tenant = await createTenant();
    const secondAttempt = hold();
    const receiver = fakeReceiver([
      () => new HttpResponse(null, { status: 503, headers: { "retry-after": "600" } }),
      async () => {
        secondAttempt.reached();
        await secondAttempt.released;
        return new HttpResponse(null, { status: 204 });
      },
    ]);
    const run = await storeFinishedRun(tenant.id);
    const { ctx, settle } = deliveryContext();
    await startRunDelivery(ctx, run);
    await settle(); // attempt 1: 503, the next attempt is the sweeper's, in 10 minutes
    expect(receiver.calls).toHaveLength(1);

    const due = new Date(Date.now() + 601_000);
    const first = tick(due);
    await secondAttempt.arrived;
    const second = await tick(new Date(due.getTime() + 1000));
    secondAttempt.release();
    const firstSummary = await first;

    expect(firstSummary.retry_deliveries).toMatchObject({ claimed: 1, succeeded: 1 });
    expect(second.retry_deliveries).toMatchObject({ claimed: 0 });
    expect(receiver.calls).toHaveLength(2);
    const [delivery] = await deliveriesOf(run.id);
    expect(delivery).toMatchObject({ status: "succeeded", attempt_count: 2 });
    expect((await attemptsOf(delivery?.id ?? "")).map((a) => a.status_code)).toEqual([503, 204]);
  });

  it("one schedule occurrence: the tick holding it starts the run, the other claims nothing", async () => {
    const tenant = await createTenant();
    const create = hold();
    const parallel = fakeParallel({
      create: async (call) => {
        create.reached();
        await create.released;
        const body = call.body as { processor: string; metadata: Record<string, unknown> };
        return HttpResponse.json(taskRun({ processor: body.processor, metadata: body.metadata }), {
          status: 202,
        });
      },
    });
    const { ctx } = deliveryContext();
    const schedule = await createSchedule(
      ctx,
      tenant.id,
      ScheduleCreateSchema.parse({
        name: "every minute",
        cron: "* * * * *",
        timezone: "UTC",
        template: { processor: "base", input: "What changed at Acme?" },
      }),
    );
    const due = new Date(schedule.next_run_at ?? "");
    const first = tick(due);
    await create.arrived;
    const second = await tick(new Date(due.getTime() + 1000));
    create.release();
    const firstSummary = await first;

    expect(firstSummary.fire_schedules).toMatchObject({ claimed: 1, fired: 1 });
    expect(second.fire_schedules).toMatchObject({ claimed: 0 });
    expect(parallel.creates()).toHaveLength(1);
    const { results } = await env.DB.prepare(
      "SELECT outcome, run_id FROM schedule_occurrences WHERE schedule_id = ?",
    )
      .bind(schedule.id)
      .all<{ outcome: string; run_id: string }>();
    expect(results.map((r) => r.outcome)).toEqual(["fired"]);
    const runs = await env.DB.prepare("SELECT id FROM runs WHERE schedule_id = ?").bind(schedule.id).all();
    expect(runs.results).toEqual([{ id: results[0]?.run_id }]);
  });
});
