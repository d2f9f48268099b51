// The minute tick firing schedules, with an injected clock: fire times across daylight-saving
// changes, pause and resume, overlap, missed ticks, templating, chaining, "notify on change",
// leases and redone ticks. What reaches Parallel is read from the create bodies fakeParallel records.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { afterEach, describe, expect, it } from "vitest";
import { findRun, type Run, updateRunReturning } from "../../src/db/runs";
import { claimDueSchedulesStatement, findSchedule, type Schedule } from "../../src/db/schedules";
import worker from "../../src/index";
import { ScheduleCreateSchema } from "../../src/schemas/schedules";
import { createServiceContext } from "../../src/services/context";
import { onRunFinished } from "../../src/services/run-finished";
import { onScheduledRunFinished } from "../../src/services/schedule-finished";
import { createSchedule, triggerSchedule, updateSchedule } from "../../src/services/schedules";
import {
  ADMIN,
  api,
  completionWebhook,
  createTenant,
  expectJson,
  fakeParallel,
  parallelError,
  resultReply,
  type Tenant,
} from "./harness";
import { capturingQueue, clockFrom, consume, runFireSchedules } from "./queue-harness";
import { network } from "./setup";

const RECEIVER = "https://receiver.example/hooks/schedules";

/** A clock the services read; `at` moves it. */
function testClock(start: string) {
  let now = Date.parse(start);
  return {
    now: () => new Date(now),
    at: (iso: string) => {
      now = Date.parse(iso);
      return new Date(now);
    },
  };
}
type Clock = ReturnType<typeof testClock>;

/** A service context on the clock, and a way to wait for its after-the-response work (callbacks). */
function services(clock: Clock) {
  const execution = createExecutionContext();
  return {
    ctx: createServiceContext(env, execution, { now: clock.now }),
    settle: () => waitOnExecutionContext(execution),
  };
}

/** One minute tick at `iso`, as the dispatcher runs it (a batch of `limit`). */
async function tick(clock: Clock, iso: string, limit = 6) {
  const { ctx, settle } = services(clock);
  const summary = await runFireSchedules(ctx, clock.at(iso), limit);
  await settle();
  return summary;
}

async function newSchedule(tenant: Tenant, clock: Clock, fields: Record<string, unknown>): Promise<Schedule> {
  const body = ScheduleCreateSchema.parse({
    name: "test",
    cron: "0 9 * * *",
    timezone: "UTC",
    template: { processor: "base", input: "What changed at Acme?" },
    ...fields,
  });
  return createSchedule(services(clock).ctx, tenant.id, body);
}

async function reload(schedule: Schedule): Promise<Schedule> {
  const found = await findSchedule(env.DB, schedule.id);
  if (!found) throw new Error(`schedule ${schedule.id} is gone`);
  return found;
}

async function occurrences(schedule: Schedule) {
  const { results } = await env.DB.prepare(
    "SELECT scheduled_at, outcome, run_id, reason FROM schedule_occurrences WHERE schedule_id = ? ORDER BY id",
  )
    .bind(schedule.id)
    .all<{ scheduled_at: string; outcome: string; run_id: string | null; reason: string | null }>();
  return results;
}

/** The pipeline's end of a run, as the webhook or the poller leaves it, then the finishing hook. */
async function finishRun(
  clock: Clock,
  runId: string,
  outcome: { content?: unknown; status?: "completed" | "failed"; interactionId?: string },
): Promise<Run> {
  const at = clock.now().toISOString();
  const status = outcome.status ?? "completed";
  const run = await updateRunReturning(env.DB, runId, at, {
    status,
    ...(outcome.interactionId ? { interaction_id: outcome.interactionId } : {}),
    output: status === "completed" ? { type: "json", content: outcome.content, basis: [] } : null,
    error: status === "completed" ? null : { code: "parallel_failed", message: "Task execution failed" },
    finished_at: at,
    result_stored_at: status === "completed" ? at : null,
    next_sweep_at: null,
    lease_until: null,
  });
  if (!run) throw new Error(`no run ${runId}`);
  const { ctx, settle } = services(clock);
  await onRunFinished(ctx, run);
  await settle();
  return run;
}

/** A callback receiver that records the run id of every callback it gets. */
function fakeReceiver() {
  const runIds: string[] = [];
  network.use(
    http.post(RECEIVER, async ({ request }) => {
      const body = (await request.json()) as { data?: { run?: { id?: string } }; run?: { id?: string } };
      runIds.push(body.data?.run?.id ?? body.run?.id ?? "?");
      return new HttpResponse(null, { status: 204 });
    }),
  );
  return { runIds };
}

type CreateBody = { input: unknown; previous_interaction_id?: string; metadata: Record<string, unknown> };
const bodies = (parallel: ReturnType<typeof fakeParallel>) =>
  parallel.creates().map((c) => c.body as CreateBody);

afterEach(async () => {
  // Every test's schedules would be due in every later test's ticks.
  await env.DB.prepare("DELETE FROM schedules").run();
});

describe("firing on time across daylight-saving changes", () => {
  it("fires a 02:30 New York schedule at 03:00 EDT on the spring-forward day, then at 02:30", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const clock = testClock("2026-03-07T12:00:00Z");
    const schedule = await newSchedule(tenant, clock, {
      cron: "30 2 * * *",
      timezone: "America/New_York",
      template: { processor: "base", input: "News for {{scheduled_date}} as of {{scheduled_at}}" },
    });
    expect(schedule.next_run_at).toBe("2026-03-08T07:00:00.000Z");

    expect(await tick(clock, "2026-03-08T06:59:00Z")).toMatchObject({ claimed: 0, fired: 0 });
    expect(await tick(clock, "2026-03-08T07:00:00Z")).toMatchObject({ claimed: 1, fired: 1 });
    expect(bodies(parallel).map((b) => b.input)).toEqual([
      "News for 2026-03-08 as of 2026-03-08T07:00:00.000Z",
    ]);

    const after = await reload(schedule);
    expect(after).toMatchObject({
      next_run_at: "2026-03-09T06:30:00.000Z",
      last_fired_at: "2026-03-08T07:00:00.000Z",
      lease_until: null,
    });
    const run = await findRun(env.DB, after.last_run_id ?? "");
    expect(run).toMatchObject({ schedule_id: schedule.id, status: "queued", api_key_id: tenant.id });
    expect(await tick(clock, "2026-03-08T07:01:00Z")).toMatchObject({ claimed: 0 });
  });

  it("fires a 02:30 New York schedule once on the fall-back day, at 02:30 EST", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const clock = testClock("2026-10-31T12:00:00Z");
    const schedule = await newSchedule(tenant, clock, { cron: "30 2 * * *", timezone: "America/New_York" });
    expect(schedule.next_run_at).toBe("2026-11-01T07:30:00.000Z");

    await tick(clock, "2026-11-01T06:30:00Z"); // 01:30 EST: the hour repeats, 02:30 has not come
    expect(parallel.creates()).toHaveLength(0);
    await tick(clock, "2026-11-01T07:30:00Z");
    expect(parallel.creates()).toHaveLength(1);
    expect((await reload(schedule)).next_run_at).toBe("2026-11-02T07:30:00.000Z");
  });

  it("fires a London schedule at 09:00 local on both sides of the change to summer time", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const clock = testClock("2026-03-28T10:00:00Z");
    const schedule = await newSchedule(tenant, clock, {
      cron: "0 9 * * *",
      timezone: "Europe/London",
      template: { processor: "base", input: "{{scheduled_date}}" },
    });
    expect(schedule.next_run_at).toBe("2026-03-29T08:00:00.000Z"); // 09:00 BST
    await tick(clock, "2026-03-29T08:00:00Z");
    expect((await reload(schedule)).next_run_at).toBe("2026-03-30T08:00:00.000Z");
    expect(bodies(parallel).map((b) => b.input)).toEqual(["2026-03-29"]);
  });

  it("fires a Kolkata schedule at the half-hour UTC instant, dated by the local calendar", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const clock = testClock("2026-03-07T12:00:00Z");
    const schedule = await newSchedule(tenant, clock, {
      cron: "30 0 * * *",
      timezone: "Asia/Kolkata",
      template: { processor: "base", input: { day: "{{scheduled_date}}", at: "{{scheduled_at}}" } },
    });
    expect(schedule.next_run_at).toBe("2026-03-07T19:00:00.000Z"); // 00:30 IST on 8 March
    await tick(clock, "2026-03-07T19:00:00Z");
    expect(bodies(parallel).map((b) => b.input)).toEqual([
      { day: "2026-03-08", at: "2026-03-07T19:00:00.000Z" },
    ]);
  });
});

describe("pause and resume", () => {
  it("fires nothing while paused and resumes from now without making up the paused time", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const clock = testClock("2026-06-01T08:00:00Z");
    const schedule = await newSchedule(tenant, clock, { cron: "0 9 * * *" });

    clock.at("2026-06-01T08:30:00Z");
    const paused = await updateSchedule(services(clock).ctx, tenant.id, schedule.id, { enabled: false });
    expect(paused).toMatchObject({ enabled: false, next_run_at: null });
    await tick(clock, "2026-06-01T09:00:00Z");
    await tick(clock, "2026-06-02T09:00:00Z");
    expect(parallel.creates()).toHaveLength(0);

    clock.at("2026-06-04T12:00:00Z");
    const resumed = await updateSchedule(services(clock).ctx, tenant.id, schedule.id, { enabled: true });
    expect(resumed).toMatchObject({ enabled: true, next_run_at: "2026-06-05T09:00:00.000Z" });
    expect(await tick(clock, "2026-06-04T12:01:00Z")).toMatchObject({ claimed: 0 });
    await tick(clock, "2026-06-05T09:00:00Z");
    expect(parallel.creates()).toHaveLength(1);
    expect(await occurrences(schedule)).toEqual([
      expect.objectContaining({ outcome: "fired", reason: null }),
    ]);
  });
});

describe("overlap", () => {
  it("skip: records the occurrence as skipped while the previous run is in flight, then fires again", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const clock = testClock("2026-06-01T08:58:00Z");
    const schedule = await newSchedule(tenant, clock, { cron: "*/5 * * * *" });

    await tick(clock, "2026-06-01T09:00:00Z");
    const first = (await reload(schedule)).last_run_id ?? "";
    expect(await tick(clock, "2026-06-01T09:05:00Z")).toMatchObject({ fired: 0, skipped_overlap: 1 });
    expect(parallel.creates()).toHaveLength(1);
    const skipped = await reload(schedule);
    expect(skipped).toMatchObject({ next_run_at: "2026-06-01T09:10:00.000Z", last_run_id: first });

    await finishRun(clock, first, { content: { headline: "none" } });
    expect(await tick(clock, "2026-06-01T09:10:00Z")).toMatchObject({ fired: 1 });
    expect(parallel.creates()).toHaveLength(2);
    expect((await occurrences(schedule)).map((o) => [o.scheduled_at, o.outcome])).toEqual([
      ["2026-06-01T09:00:00.000Z", "fired"],
      ["2026-06-01T09:05:00.000Z", "skipped_overlap"],
      ["2026-06-01T09:10:00.000Z", "fired"],
    ]);
    expect((await occurrences(schedule))[1]?.reason).toContain(first);
  });

  it("skip: a completed run whose result is still being fetched is still in flight", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const clock = testClock("2026-06-01T08:58:00Z");
    const schedule = await newSchedule(tenant, clock, { cron: "*/5 * * * *" });
    await tick(clock, "2026-06-01T09:00:00Z");
    const first = (await reload(schedule)).last_run_id ?? "";
    await updateRunReturning(env.DB, first, clock.now().toISOString(), {
      status: "completed",
      next_sweep_at: "2026-06-01T09:06:00.000Z",
    });
    expect(await tick(clock, "2026-06-01T09:05:00Z")).toMatchObject({ skipped_overlap: 1 });
    expect(parallel.creates()).toHaveLength(1);
  });

  it("allow: starts the next run although the previous one is in flight", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const clock = testClock("2026-06-01T08:58:00Z");
    const schedule = await newSchedule(tenant, clock, { cron: "*/5 * * * *", overlap: "allow" });
    await tick(clock, "2026-06-01T09:00:00Z");
    await tick(clock, "2026-06-01T09:05:00Z");
    expect(parallel.creates()).toHaveLength(2);
    const runs = await expectJson<{ data: Array<{ status: string }> }>(
      await api(`/v1/schedules/${schedule.id}/runs`, { headers: tenant.auth }),
      200,
    );
    expect(runs.data.map((r) => r.status)).toEqual(["queued", "queued"]);
  });
});

describe("missed occurrences", () => {
  it("run_once: one run for a day and a half of missed hourly occurrences, not a burst", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const clock = testClock("2026-06-01T08:30:00Z");
    const schedule = await newSchedule(tenant, clock, {
      cron: "0 * * * *",
      template: { processor: "base", input: "As of {{scheduled_at}}" },
    });
    expect(schedule.next_run_at).toBe("2026-06-01T09:00:00.000Z");

    // The worker was down from 08:30 on the 1st until 20:17 on the 2nd.
    expect(await tick(clock, "2026-06-02T20:17:00Z")).toMatchObject({ claimed: 1, fired: 1 });
    expect(await tick(clock, "2026-06-02T20:18:00Z")).toMatchObject({ claimed: 0 });
    expect(bodies(parallel).map((b) => b.input)).toEqual(["As of 2026-06-02T20:00:00.000Z"]);
    expect(await reload(schedule)).toMatchObject({
      next_run_at: "2026-06-02T21:00:00.000Z",
      last_fired_at: "2026-06-02T20:00:00.000Z",
    });
    const [fired] = await occurrences(schedule);
    expect(fired).toMatchObject({ outcome: "fired", scheduled_at: "2026-06-02T20:00:00.000Z" });
    expect(fired?.reason).toContain("missed since 2026-06-01T09:00:00.000Z");
  });

  it("skip: no run for missed occurrences, and the schedule moves on", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const clock = testClock("2026-06-01T08:30:00Z");
    const schedule = await newSchedule(tenant, clock, { cron: "0 * * * *", missed: "skip" });

    expect(await tick(clock, "2026-06-02T20:17:00Z")).toMatchObject({ fired: 0, skipped_missed: 1 });
    expect(parallel.creates()).toHaveLength(0);
    expect((await reload(schedule)).next_run_at).toBe("2026-06-02T21:00:00.000Z");
    expect(await occurrences(schedule)).toEqual([
      expect.objectContaining({
        outcome: "skipped_missed",
        scheduled_at: "2026-06-02T20:00:00.000Z",
        run_id: null,
      }),
    ]);
  });

  it("skip: the occurrence that is on time still fires after the missed ones are skipped", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const clock = testClock("2026-06-01T08:30:00Z");
    const schedule = await newSchedule(tenant, clock, { cron: "0 * * * *", missed: "skip" });

    await tick(clock, "2026-06-01T12:00:00Z");
    expect(parallel.creates()).toHaveLength(1);
    expect((await occurrences(schedule)).map((o) => [o.scheduled_at, o.outcome])).toEqual([
      ["2026-06-01T09:00:00.000Z", "skipped_missed"],
      ["2026-06-01T12:00:00.000Z", "fired"],
    ]);
  });

  it("skip: a tick up to two minutes late is not a missed occurrence", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const clock = testClock("2026-06-01T08:30:00Z");
    await newSchedule(tenant, clock, { cron: "0 9 * * *", missed: "skip" });
    await tick(clock, "2026-06-01T09:02:00Z");
    expect(parallel.creates()).toHaveLength(1);
  });
});

describe("templating and chaining", () => {
  it("renders last_success_* empty first, then from the last success; chains only successful runs", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const clock = testClock("2026-06-01T00:00:00Z");
    const schedule = await newSchedule(tenant, clock, {
      cron: "30 3 * * *", // 03:30 in Kolkata = 22:00 UTC the day before
      timezone: "Asia/Kolkata",
      chain_interactions: true,
      template: {
        processor: "base",
        input: { question: "What changed since {{last_success_at}}?", since: "{{last_success_date}}" },
      },
    });
    expect(schedule.next_run_at).toBe("2026-06-01T22:00:00.000Z");

    await tick(clock, "2026-06-01T22:00:00Z");
    const first = (await reload(schedule)).last_run_id ?? "";
    await finishRun(clock, first, { content: { news: "a" }, interactionId: "trun_first" });

    await tick(clock, "2026-06-02T22:00:00Z");
    const second = (await reload(schedule)).last_run_id ?? "";
    await finishRun(clock, second, { status: "failed" });

    await tick(clock, "2026-06-03T22:00:00Z");

    expect(bodies(parallel)).toEqual([
      expect.objectContaining({ input: { question: "What changed since ?", since: "" } }),
      expect.objectContaining({
        input: { question: "What changed since 2026-06-01T22:00:00.000Z?", since: "2026-06-02" },
        previous_interaction_id: "trun_first",
      }),
      // The failed run changed nothing: still the first run's occurrence and interaction.
      expect.objectContaining({
        input: { question: "What changed since 2026-06-01T22:00:00.000Z?", since: "2026-06-02" },
        previous_interaction_id: "trun_first",
      }),
    ]);
    expect(bodies(parallel)[0]).not.toHaveProperty("previous_interaction_id");
    expect(await reload(schedule)).toMatchObject({
      last_success_run_id: first,
      last_success_at: "2026-06-01T22:00:00.000Z",
    });
  });

  it("does not chain when chain_interactions is off", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const clock = testClock("2026-06-01T08:00:00Z");
    const schedule = await newSchedule(tenant, clock, {});
    await tick(clock, "2026-06-01T09:00:00Z");
    await finishRun(clock, (await reload(schedule)).last_run_id ?? "", {
      content: "x",
      interactionId: "trun_x",
    });
    await tick(clock, "2026-06-02T09:00:00Z");
    expect(bodies(parallel).map((b) => b.previous_interaction_id)).toEqual([undefined, undefined]);
  });

  it("a triggered run fills in now and chains like a fired one", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const clock = testClock("2026-06-01T08:00:00Z");
    const schedule = await newSchedule(tenant, clock, {
      chain_interactions: true,
      template: { processor: "base", input: "Since {{last_success_at}} until {{scheduled_at}}" },
    });
    await tick(clock, "2026-06-01T09:00:00Z");
    await finishRun(clock, (await reload(schedule)).last_run_id ?? "", {
      content: "x",
      interactionId: "trun_one",
    });

    clock.at("2026-06-01T15:45:00Z");
    const run = await triggerSchedule(services(clock).ctx, tenant.id, schedule.id);
    expect(run.schedule_id).toBe(schedule.id);
    expect(bodies(parallel)[1]).toMatchObject({
      input: "Since 2026-06-01T09:00:00.000Z until 2026-06-01T15:45:00.000Z",
      previous_interaction_id: "trun_one",
    });
    // The trigger does not move the schedule.
    expect(await reload(schedule)).toMatchObject({
      next_run_at: "2026-06-02T09:00:00.000Z",
      last_run_id: run.id,
    });

    // Its success counts as of when it was asked for.
    await finishRun(clock, run.id, { content: "y" });
    expect(await reload(schedule)).toMatchObject({ last_success_at: "2026-06-01T15:45:00.000Z" });
  });
});

describe("notify: on_change", () => {
  async function scheduleWithCallback(notify: "on_change" | "always") {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const receiver = fakeReceiver();
    const clock = testClock("2026-06-01T08:00:00Z");
    const schedule = await newSchedule(tenant, clock, { notify, callback: { url: RECEIVER } });
    /** Fires the day's occurrence and finishes its run with `content`. */
    const day = async (date: string, outcome: Parameters<typeof finishRun>[2]) => {
      await tick(clock, `${date}T09:00:00Z`);
      const runId = (await reload(schedule)).last_run_id ?? "";
      await finishRun(clock, runId, outcome);
      const view = await expectJson<{ output_changed: boolean | null }>(
        await api(`/v1/runs/${runId}`, { headers: tenant.auth }),
        200,
      );
      return { runId, outputChanged: view.output_changed };
    };
    return { tenant, parallel, receiver, clock, schedule, day };
  }

  it("sends the callback only when the output differs from the last success's", async () => {
    const { receiver, day } = await scheduleWithCallback("on_change");
    const first = await day("2026-06-01", { content: { ceo: "A. Smith", revenue: "1bn" } });
    // The same content with its keys in another order is the same output.
    const same = await day("2026-06-02", { content: { revenue: "1bn", ceo: "A. Smith" } });
    const changed = await day("2026-06-03", { content: { ceo: "B. Jones", revenue: "1bn" } });
    const failed = await day("2026-06-04", { status: "failed" });

    expect([first, same, changed, failed].map((r) => r.outputChanged)).toEqual([true, false, true, null]);
    // Failures are always delivered: they are news, not an unchanged output.
    expect(receiver.runIds).toEqual([first.runId, changed.runId, failed.runId]);
  });

  it("always: sends every callback and still shows whether the output changed", async () => {
    const { receiver, day } = await scheduleWithCallback("always");
    const first = await day("2026-06-01", { content: "Acme is quiet." });
    const same = await day("2026-06-02", { content: "Acme is quiet." });
    expect([first.outputChanged, same.outputChanged]).toEqual([true, false]);
    expect(receiver.runIds).toEqual([first.runId, same.runId]);
  });

  it("decides once per run: a second finishing call changes nothing", async () => {
    const { clock, day, schedule } = await scheduleWithCallback("on_change");
    const first = await day("2026-06-01", { content: "v1" });
    const run = await findRun(env.DB, first.runId);
    const again = await onScheduledRunFinished(services(clock).ctx, run as Run);
    expect(again.notify).toBe(true);
    expect(await findRun(env.DB, first.runId)).toMatchObject({ output_changed: true });
    expect(await reload(schedule)).toMatchObject({ last_success_run_id: first.runId });
  });
});

describe("through the completion pipeline", () => {
  it("a completed scheduled run reports output_changed and, on_change, is delivered only when it changed", async () => {
    const tenant = await createTenant();
    const contents = [{ price: "$10" }, { price: "$10" }, { price: "$12" }];
    fakeParallel({
      result: (call) =>
        resultReply(call.path.split("/")[4] ?? "", { type: "json", content: contents.shift(), basis: [] }),
    });
    const receiver = fakeReceiver();
    const clock = testClock("2026-06-01T08:00:00Z");
    const schedule = await newSchedule(tenant, clock, { notify: "on_change", callback: { url: RECEIVER } });

    const changes: Array<boolean | null> = [];
    const runIds: string[] = [];
    for (const day of ["2026-06-01", "2026-06-02", "2026-06-03"]) {
      await tick(clock, `${day}T09:00:00Z`);
      const run = await findRun(env.DB, (await reload(schedule)).last_run_id ?? "");
      await completionWebhook(run?.parallel_run_id ?? "");
      const view = await expectJson<{ status: string; output_changed: boolean | null }>(
        await api(`/v1/runs/${run?.id}`, { headers: tenant.auth }),
        200,
      );
      expect(view.status).toBe("completed");
      changes.push(view.output_changed);
      runIds.push(run?.id ?? "");
    }
    expect(changes).toEqual([true, false, true]);
    expect(receiver.runIds).toEqual([runIds[0], runIds[2]]);
  });
});

describe("leases, redone ticks, refusals and bounds", () => {
  it("a tick redone after a crash finds the occurrence's run instead of making another", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const clock = testClock("2026-06-01T08:00:00Z");
    const schedule = await newSchedule(tenant, clock, {});
    await tick(clock, "2026-06-01T09:00:00Z");
    const runId = (await reload(schedule)).last_run_id;

    // As if the tick died after creating the run and before moving the schedule on: the schedule
    // is still due and leased, and nothing was recorded.
    await env.DB.batch([
      env.DB.prepare(
        "UPDATE schedules SET next_run_at = ?, lease_until = ?, last_run_id = NULL, last_fired_at = NULL WHERE id = ?",
      ).bind("2026-06-01T09:00:00.000Z", "2026-06-01T09:05:00.000Z", schedule.id),
      env.DB.prepare("DELETE FROM schedule_occurrences WHERE schedule_id = ?").bind(schedule.id),
    ]);
    expect(await tick(clock, "2026-06-01T09:01:00Z")).toMatchObject({ claimed: 0 }); // still leased
    expect(await tick(clock, "2026-06-01T09:05:00Z")).toMatchObject({ claimed: 1, fired: 1 });

    expect(parallel.creates()).toHaveLength(1);
    expect(await reload(schedule)).toMatchObject({
      last_run_id: runId,
      next_run_at: "2026-06-02T09:00:00.000Z",
    });
    expect(await occurrences(schedule)).toEqual([
      expect.objectContaining({ outcome: "fired", run_id: runId, scheduled_at: "2026-06-01T09:00:00.000Z" }),
    ]);
  });

  it("two ticks at once fire each due schedule once", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const clock = testClock("2026-06-01T08:00:00Z");
    for (let i = 0; i < 4; i++) await newSchedule(tenant, clock, {});
    clock.at("2026-06-01T09:00:00Z");
    const [a, b] = await Promise.all([
      runFireSchedules(services(clock).ctx, clock.now(), 6),
      runFireSchedules(services(clock).ctx, clock.now(), 6),
    ]);
    expect((a?.claimed as number) + (b?.claimed as number)).toBe(4);
    expect(parallel.creates()).toHaveLength(4);
  });

  it("takes a bounded batch per tick and leaves the rest for the next tick", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const clock = testClock("2026-06-01T08:00:00Z");
    const batch = 3;
    for (let i = 0; i < batch + 2; i++) await newSchedule(tenant, clock, {});
    expect(await tick(clock, "2026-06-01T09:00:00Z", batch)).toMatchObject({ claimed: batch, fired: batch });
    expect(await tick(clock, "2026-06-01T09:01:00Z", batch)).toMatchObject({ claimed: 2, fired: 2 });
    expect(parallel.creates()).toHaveLength(batch + 2);
  });

  it("moves on when Parallel refuses the run, which is stored as rejected", async () => {
    const tenant = await createTenant();
    fakeParallel({ create: () => parallelError(422, "Unprocessable content: request validation error") });
    const clock = testClock("2026-06-01T08:00:00Z");
    const schedule = await newSchedule(tenant, clock, {});
    expect(await tick(clock, "2026-06-01T09:00:00Z")).toMatchObject({ fired: 1, errors: 0 });
    const after = await reload(schedule);
    expect(after.next_run_at).toBe("2026-06-02T09:00:00.000Z");
    expect(await findRun(env.DB, after.last_run_id ?? "")).toMatchObject({ status: "rejected" });
    expect((await occurrences(schedule))[0]?.reason).toContain("HTTP 422");
  });

  it("moves on, with no run, when the filled-in template no longer passes the checks", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const clock = testClock("2026-06-01T08:00:00Z");
    // Exactly Parallel's 25,000 characters as written; eight more once {{scheduled_at}} is filled in.
    const input = `${"x".repeat(25_000 - 16)}{{scheduled_at}}`;
    const schedule = await newSchedule(tenant, clock, { template: { processor: "base", input } });
    expect(await tick(clock, "2026-06-01T09:00:00Z")).toMatchObject({ fired: 0, failed: 1 });
    expect(parallel.creates()).toHaveLength(0);
    expect(await reload(schedule)).toMatchObject({
      next_run_at: "2026-06-02T09:00:00.000Z",
      last_run_id: null,
    });
    expect((await occurrences(schedule))[0]).toMatchObject({ outcome: "failed", run_id: null });
    expect((await occurrences(schedule))[0]?.reason).toContain("25008");
  });

  it("pauses the schedules of a revoked key instead of starting their runs", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const clock = testClock("2026-06-01T08:00:00Z");
    const schedule = await newSchedule(tenant, clock, {});
    await expectJson(await api(`/v1/keys/${tenant.id}`, { method: "DELETE", headers: ADMIN }), 200);
    expect(await tick(clock, "2026-06-01T09:00:00Z")).toMatchObject({ claimed: 1, fired: 0, failed: 1 });
    expect(parallel.creates()).toHaveLength(0);
    expect(await reload(schedule)).toMatchObject({ enabled: false, next_run_at: null, lease_until: null });
    expect((await occurrences(schedule))[0]?.reason).toContain("revoked");
  });

  it("runs in the Worker's cron handler", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    // Years before every other test's schedules: this tick finds only this one due.
    const clock = testClock("2020-01-01T08:00:00Z");
    const schedule = await newSchedule(tenant, clock, {});
    const execution = createExecutionContext();
    const controller = { scheduledTime: Date.parse("2020-01-01T09:00:00Z"), cron: "* * * * *", noRetry() {} };
    // The handler only hands due work to WORK_QUEUE; the consumer fires it.
    const captured = capturingQueue();
    await worker.scheduled(
      controller as ScheduledController,
      { ...env, WORK_QUEUE: captured.queue, DELIVERY_QUEUE: captured.queue },
      execution,
    );
    await waitOnExecutionContext(execution);
    await consume(
      captured.take().map((m) => m.body),
      { now: clockFrom(new Date(controller.scheduledTime)), queue: captured.queue },
    );
    expect(parallel.creates()).toHaveLength(1);
    expect(await occurrences(schedule)).toEqual([
      expect.objectContaining({ outcome: "fired", scheduled_at: "2020-01-01T09:00:00.000Z" }),
    ]);
  });
});

describe("tick cost", () => {
  /** Stores schedules straight into D1 in one statement: paused ones, or enabled ones due later. */
  async function storeSchedules(apiKeyId: string, count: number, prefix: string, enabled: boolean) {
    const at = "2026-06-01T00:00:00.000Z";
    await env.DB.prepare(
      `WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?)
       INSERT INTO schedules (id, api_key_id, name, cron, timezone, template, overlap, missed, notify,
         chain_interactions, enabled, next_run_at, created_at, updated_at)
       SELECT printf('sch_%s%08d', ?, n), ?, 'bulk', '0 9 * * *', 'UTC', '{"processor":"base","input":"q"}',
         'skip', 'run_once', 'always', 0, ?, ?, ?, ? FROM seq`,
    )
      .bind(count, prefix, apiKeyId, enabled ? 1 : 0, enabled ? "2027-01-01T09:00:00.000Z" : null, at, at)
      .run();
  }

  async function claimRowsRead(): Promise<number> {
    // Lease "until" the past: claims the due schedules without holding them, reading what a tick reads.
    const now = "2026-06-02T09:00:00.000Z";
    const result = await claimDueSchedulesStatement(env.DB, now, "2000-01-01T00:00:00.000Z", 10).all();
    return result.meta.rows_read;
  }

  it("reads the same rows with 2,000 and with 20,000 paused or future schedules", async () => {
    const tenant = await createTenant();
    const clock = testClock("2026-06-01T08:00:00Z");
    for (let i = 0; i < 3; i++) await newSchedule(tenant, clock, {});

    await storeSchedules(tenant.id, 1_000, "a", false);
    await storeSchedules(tenant.id, 1_000, "b", true);
    const at2k = await claimRowsRead();
    await storeSchedules(tenant.id, 9_000, "c", false);
    await storeSchedules(tenant.id, 9_000, "d", true);
    const at20k = await claimRowsRead();
    expect(at20k).toBe(at2k);
    expect(at2k).toBeLessThan(40);

    // The plan of the very statement a tick runs (the code builds it, with its parameters).
    const explaining = {
      prepare: (sql: string) => env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`),
    } as unknown as D1Database;
    const plan = await claimDueSchedulesStatement(
      explaining,
      "2026-06-02T09:00:00.000Z",
      "2026-06-02T09:05:00.000Z",
      10,
    ).all<{
      detail: string;
    }>();
    expect(plan.results.map((r) => r.detail).join(" | ")).toContain("schedules_due");
  }, 60_000);
});
