// Task Groups: the official SDK's client.taskGroup.* against the simulator — every method, every
// error class, resumable streams, per-input task_spec over default_task_spec, and group runs
// behaving as ordinary runs (retrieve, result, signed webhooks).

import type Parallel from "parallel-web";
import {
  AuthenticationError,
  BadRequestError,
  InternalServerError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  UnprocessableEntityError,
} from "parallel-web";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADD_RUNS_SLICE } from "../../../sim/groups-api.ts";
import { createSimulator, type SimHandle } from "../../../sim/server.ts";
import type { TaskRun } from "../../../sim/types.ts";
import {
  API_KEY,
  call,
  expectRejects,
  GDP_SCHEMA,
  type Receiver,
  sdk,
  startReceiver,
  startTestSim,
} from "./harness.ts";

const GROUP_ID = /^tgrp_[0-9a-f]{32}$/;
const RUN_ID = /^trun_[0-9a-f]{32}$/;
const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const WEBHOOK_SECRET = "group-webhook-secret";
const WEBHOOK_BETA = "webhook-2025-08-12" as const;

const POPULATION_SCHEMA = {
  type: "object",
  properties: { population: { type: "integer", description: "Inhabitants" } },
  required: ["population"],
  additionalProperties: false,
} as const;
const GDP_SPEC = { output_schema: { type: "json" as const, json_schema: GDP_SCHEMA } };
const POPULATION_SPEC = { output_schema: { type: "json" as const, json_schema: POPULATION_SCHEMA } };

let sim: SimHandle;
let client: Parallel;
let receiver: Receiver;

beforeAll(async () => {
  receiver = await startReceiver();
  // Every run takes 300 ms of wall-clock time, so a group is active long enough to watch.
  sim = await startTestSim({ run_duration_ms: 300, webhook_secret: WEBHOOK_SECRET });
  client = sdk(sim);
});
afterAll(async () => {
  await sim.close();
  await receiver.close();
});

async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of stream) items.push(item);
  return items;
}

async function untilInactive(api: Parallel, groupId: string): Promise<Parallel.TaskGroup> {
  await expect.poll(() => api.taskGroup.retrieve(groupId).then((g) => g.status.is_active)).toBe(false);
  return api.taskGroup.retrieve(groupId);
}

function inputs(n: number, prefix = "row"): Parallel.RunInput[] {
  return Array.from({ length: n }, (_, i) => ({ input: `${prefix} ${i}`, processor: "lite" }));
}

describe("create and retrieve", () => {
  it("answers a TaskGroup shaped as the SDK types it", async () => {
    const group = await client.taskGroup.create({ metadata: { batch: "b1", size: 2, nightly: true } });
    expect(Object.keys(group)).toEqual(["taskgroup_id", "status", "metadata", "created_at"]);
    expect(group).toEqual({
      taskgroup_id: expect.stringMatching(GROUP_ID),
      status: {
        num_task_runs: 0,
        task_run_status_counts: {},
        is_active: false,
        status_message: "",
        modified_at: group.created_at,
      },
      metadata: { batch: "b1", size: 2, nightly: true },
      created_at: expect.stringMatching(RFC3339_UTC),
    });
    expect(await client.taskGroup.retrieve(group.taskgroup_id)).toEqual(group);
    const bare = await client.taskGroup.create({});
    expect(bare.metadata).toBeNull();
    expect(bare.taskgroup_id).not.toBe(group.taskgroup_id);
  });
});

describe("add runs", () => {
  it("runs every input as an ordinary run: default_task_spec, a per-input override, metadata and signed webhooks", async () => {
    const group = await client.taskGroup.create({});
    const webhook = { url: receiver.url, event_types: ["task_run.status" as const] };
    const before = receiver.received.length;
    const added = await client.taskGroup.addRuns(group.taskgroup_id, {
      default_task_spec: GDP_SPEC,
      inputs: [
        { input: "France", processor: "lite", metadata: { row: 0 }, webhook },
        { input: { country: "Japan" }, processor: "base", metadata: { row: 1 }, webhook },
        { input: "Chile", processor: "lite", metadata: { row: 2 }, webhook, task_spec: POPULATION_SPEC },
      ],
      betas: [WEBHOOK_BETA, "field-basis-2025-11-25"],
    });
    expect(Object.keys(added)).toEqual(["status", "run_ids", "run_cursor", "event_cursor"]);
    expect(added.run_ids).toHaveLength(3);
    for (const id of added.run_ids) expect(id).toMatch(RUN_ID);
    expect(new Set(added.run_ids).size).toBe(3);
    expect(added.run_cursor).toBeNull();
    expect(added.event_cursor).toBeNull();
    expect(added.status).toMatchObject({
      num_task_runs: 3,
      task_run_status_counts: { queued: 3 },
      is_active: true,
      modified_at: expect.stringMatching(RFC3339_UTC),
    });

    const ids = added.run_ids;
    const runs = await Promise.all(ids.map((id) => client.taskRun.retrieve(id)));
    runs.forEach((run, row) => {
      expect(run).toMatchObject({ taskgroup_id: group.taskgroup_id, metadata: { row } });
    });
    const accepted = await Promise.all(ids.map((id) => client.taskRun.retrieveInput(id)));
    expect(accepted.map((input) => input.task_spec)).toEqual([GDP_SPEC, GDP_SPEC, POPULATION_SPEC]);
    expect(accepted[1]).toEqual({
      input: { country: "Japan" },
      processor: "base",
      metadata: { row: 1 },
      webhook,
      task_spec: GDP_SPEC,
    });

    const results = await Promise.all(ids.map((id) => client.taskRun.result(id, { timeout: 10 })));
    expect(results.map((r) => r.output.content)).toEqual([
      { gdp: expect.any(String) },
      { gdp: expect.any(String) },
      { population: expect.any(Number) },
    ]);
    for (const result of results) expect(result.run.taskgroup_id).toBe(group.taskgroup_id);
    // The same (now finished) run through the group's own read.
    expect(await client.taskGroup.retrieveRun(ids[0] ?? "", { taskgroup_id: group.taskgroup_id })).toEqual(
      results[0]?.run,
    );

    const hooks = (await receiver.waitFor(before + 3)).slice(before);
    const verifier = new Webhook(WEBHOOK_SECRET, { format: "raw" });
    const delivered = hooks.map((hook) => {
      const headers = {
        "webhook-id": String(hook.headers["webhook-id"]),
        "webhook-timestamp": String(hook.headers["webhook-timestamp"]),
        "webhook-signature": String(hook.headers["webhook-signature"]),
      };
      expect(() => verifier.verify(hook.body, headers)).not.toThrow();
      return JSON.parse(hook.body) as { type: string; data: TaskRun };
    });
    expect(delivered.map((d) => d.data.run_id).sort()).toEqual([...ids].sort());
    for (const payload of delivered) {
      expect(payload.type).toBe("task_run.status");
      expect(payload.data).toMatchObject({ status: "completed", taskgroup_id: group.taskgroup_id });
      expect(payload.data).toEqual((await call(sim, "GET", `/v1/tasks/runs/${payload.data.run_id}`)).json);
    }

    const done = await untilInactive(client, group.taskgroup_id);
    expect(done.status).toMatchObject({ num_task_runs: 3, task_run_status_counts: { completed: 3 } });
  });

  it("takes 1,000 inputs in one call", async () => {
    const group = await client.taskGroup.create({});
    const added = await client.taskGroup.addRuns(group.taskgroup_id, {
      inputs: inputs(1000),
      default_task_spec: GDP_SPEC,
    });
    expect(new Set(added.run_ids).size).toBe(1000);
    expect(added.status.num_task_runs).toBe(1000);
    const retrieved = await client.taskGroup.retrieve(group.taskgroup_id);
    expect(retrieved.status.num_task_runs).toBe(1000);
    const counts = Object.values(retrieved.status.task_run_status_counts);
    expect(counts.reduce((sum, n) => sum + n, 0)).toBe(1000);
  });

  it("a later call answers cursors that resume both streams at its runs", async () => {
    const group = await client.taskGroup.create({});
    const firstAdd = await client.taskGroup.addRuns(group.taskgroup_id, { inputs: inputs(2, "a") });
    const secondAdd = await client.taskGroup.addRuns(group.taskgroup_id, { inputs: inputs(2, "b") });
    expect(secondAdd.run_cursor).toBe("2");
    expect(secondAdd.event_cursor).toEqual(expect.any(String));
    expect(secondAdd.status.num_task_runs).toBe(4);

    const later = await collect(
      await client.taskGroup.getRuns(group.taskgroup_id, { last_event_id: secondAdd.run_cursor }),
    );
    expect(later.map((e) => (e.type === "task_run.state" ? e.run.run_id : e.type))).toEqual(
      secondAdd.run_ids,
    );

    await untilInactive(client, group.taskgroup_id);
    const events = await collect(
      await client.taskGroup.events(group.taskgroup_id, { last_event_id: secondAdd.event_cursor }),
    );
    // From the second call on: its status, then the ends of all four runs (two of them the first call's).
    expect(events[0]).toMatchObject({ type: "task_group_status", status: { num_task_runs: 4 } });
    const ended = events.flatMap((e) => (e.type === "task_run.state" ? [e.run.run_id] : []));
    expect(ended.sort()).toEqual([...firstAdd.run_ids, ...secondAdd.run_ids].sort());
  });
});

describe("the runs stream", () => {
  it("lists every run in the order added, with input and output on request, filtered by status, resumable", async () => {
    const group = await client.taskGroup.create({});
    const added = await client.taskGroup.addRuns(group.taskgroup_id, {
      inputs: inputs(5, "stream"),
      default_task_spec: GDP_SPEC,
    });
    const ids = added.run_ids;
    sim.control.finishRun(ids[1] ?? "", "failed");

    // A snapshot: it answers at once, active runs included.
    const live = await collect(await client.taskGroup.getRuns(group.taskgroup_id));
    expect(live.map((e) => e.type === "task_run.state" && e.run.run_id)).toEqual(ids);
    expect(live.map((e) => e.type === "task_run.state" && e.run.status)).toContain("failed");

    await untilInactive(client, group.taskgroup_id);
    const plain = await collect(await client.taskGroup.getRuns(group.taskgroup_id));
    expect(plain).toHaveLength(5);
    plain.forEach((event, i) => {
      if (event.type !== "task_run.state") throw new Error(`unexpected ${event.type}`);
      expect(event.event_id).toBe(String(i + 1));
      expect(event.run.run_id).toBe(ids[i]);
      expect(event.input).toBeNull();
      expect(event.output).toBeNull();
    });

    const full = await collect(
      await client.taskGroup.getRuns(group.taskgroup_id, { include_input: true, include_output: true }),
    );
    for (const event of full) {
      if (event.type !== "task_run.state") throw new Error(`unexpected ${event.type}`);
      expect(event.input).toEqual(await client.taskRun.retrieveInput(event.run.run_id));
      if (event.run.status === "failed") {
        expect(event.output).toBeNull();
        expect(event.run.error).toMatchObject({ ref_id: expect.stringMatching(UUID) });
      } else {
        expect(event.output).toEqual((await client.taskRun.result(event.run.run_id)).output);
      }
    }

    const failed = await collect(await client.taskGroup.getRuns(group.taskgroup_id, { status: "failed" }));
    expect(failed).toEqual([
      expect.objectContaining({ event_id: "2", run: expect.objectContaining({ run_id: ids[1] }) }),
    ]);

    const resumed = await collect(await client.taskGroup.getRuns(group.taskgroup_id, { last_event_id: "3" }));
    expect(resumed.map((e) => e.type === "task_run.state" && e.run.run_id)).toEqual(ids.slice(3));
    expect(resumed).toEqual(plain.slice(3));
  });

  it("answers an unknown cursor with an error event", async () => {
    const group = await client.taskGroup.create({});
    await client.taskGroup.addRuns(group.taskgroup_id, { inputs: inputs(1) });
    for (const cursor of ["2", "x1"]) {
      const events = await collect(
        await client.taskGroup.getRuns(group.taskgroup_id, { last_event_id: cursor }),
      );
      expect(events).toEqual([
        {
          type: "error",
          error: {
            ref_id: expect.stringMatching(UUID),
            message: expect.stringContaining("last_event_id"),
            detail: { last_event_id: cursor },
          },
        },
      ]);
    }
  });

  it("streams 1,000 runs with their outputs", async () => {
    const fast = await startTestSim({ run_duration_ms: 0 });
    try {
      const api = sdk(fast);
      const group = await api.taskGroup.create({});
      const added = await api.taskGroup.addRuns(group.taskgroup_id, {
        inputs: inputs(1000),
        default_task_spec: GDP_SPEC,
      });
      await untilInactive(api, group.taskgroup_id);
      const events = await collect(await api.taskGroup.getRuns(group.taskgroup_id, { include_output: true }));
      expect(events.map((e) => e.type === "task_run.state" && e.run.run_id)).toEqual(added.run_ids);
      for (const event of events) {
        if (event.type !== "task_run.state") throw new Error(`unexpected ${event.type}`);
        expect(event.output?.content).toEqual({ gdp: expect.any(String) });
      }
    } finally {
      await fast.close();
    }
  });
});

describe("the events stream", () => {
  it("logs statuses and run ends in order, closes when the group is done, and resumes after any event", async () => {
    const group = await client.taskGroup.create({});
    const added = await client.taskGroup.addRuns(group.taskgroup_id, { inputs: inputs(3, "events") });
    const events = await collect(await client.taskGroup.events(group.taskgroup_id));

    // The empty group's status, the status after the add, then each run's end and the status after it.
    expect(events.map((e) => e.type)).toEqual([
      "task_group_status",
      "task_group_status",
      "task_run.state",
      "task_group_status",
      "task_run.state",
      "task_group_status",
      "task_run.state",
      "task_group_status",
    ]);
    events.forEach((event, i) => {
      if (event.type === "error") throw new Error("unexpected error event");
      expect(event.event_id).toBe(String(i + 1));
    });
    expect(events[1]).toMatchObject({
      status: { num_task_runs: 3, task_run_status_counts: { queued: 3 }, is_active: true },
    });
    const ends = events.flatMap((e) => (e.type === "task_run.state" ? [e] : []));
    expect(ends.map((e) => e.run.run_id).sort()).toEqual([...added.run_ids].sort());
    for (const end of ends) {
      expect(end.run).toMatchObject({
        status: "completed",
        is_active: false,
        taskgroup_id: group.taskgroup_id,
      });
      expect(end.input).toBeNull();
      expect(end.output).toBeNull();
    }
    expect(events.at(-1)).toEqual({
      type: "task_group_status",
      event_id: "8",
      status: {
        num_task_runs: 3,
        task_run_status_counts: { completed: 3 },
        is_active: false,
        status_message: "",
        modified_at: expect.stringMatching(RFC3339_UTC),
      },
    });

    const resumed = await collect(await client.taskGroup.events(group.taskgroup_id, { last_event_id: "4" }));
    expect(resumed).toEqual(events.slice(4));

    // A run added to a finished group opens it again; its cursor resumes right there.
    const again = await client.taskGroup.addRuns(group.taskgroup_id, { inputs: inputs(1, "again") });
    expect(again.event_cursor).toBe("8");
    const tail = await collect(
      await client.taskGroup.events(group.taskgroup_id, { last_event_id: again.event_cursor }),
    );
    expect(tail.map((e) => e.type)).toEqual(["task_group_status", "task_run.state", "task_group_status"]);
    expect(tail.at(-1)).toMatchObject({
      status: { num_task_runs: 4, task_run_status_counts: { completed: 4 }, is_active: false },
    });
  });

  it("carries failed runs with their error, and answers an unknown cursor with an error event", async () => {
    const group = await client.taskGroup.create({});
    const added = await client.taskGroup.addRuns(group.taskgroup_id, { inputs: inputs(2, "mixed") });
    sim.control.finishRun(added.run_ids[0] ?? "", "failed");
    const events = await collect(await client.taskGroup.events(group.taskgroup_id));
    const failed = events.find((e) => e.type === "task_run.state" && e.run.status === "failed");
    expect(failed).toMatchObject({
      run: { run_id: added.run_ids[0], error: { message: "Task execution failed" } },
    });
    expect(events.at(-1)).toMatchObject({ status: { task_run_status_counts: { completed: 1, failed: 1 } } });

    const refused = await collect(await client.taskGroup.events(group.taskgroup_id, { last_event_id: "99" }));
    expect(refused).toEqual([
      {
        type: "error",
        error: {
          ref_id: expect.stringMatching(UUID),
          message: expect.any(String),
          detail: { last_event_id: "99" },
        },
      },
    ]);
  });

  it("stays open while a run is active, for at most an hour of Parallel's time, sending keep-alives", async () => {
    // 1 h × 0.0001 = 360 ms; the run would take a minute.
    const slow = await startTestSim({ time_scale: 0.0001, run_duration_ms: 60_000 });
    try {
      const api = sdk(slow);
      const group = await api.taskGroup.create({});
      await api.taskGroup.addRuns(group.taskgroup_id, { inputs: inputs(1) });
      const started = Date.now();
      const raw = await call(slow, "GET", `/v1/tasks/groups/${group.taskgroup_id}/events`);
      expect(Date.now() - started).toBeGreaterThanOrEqual(300);
      expect(raw.headers.get("content-type")).toContain("text/event-stream");
      expect(raw.text).toMatch(/^: ping$/m);
      expect(raw.text.startsWith("event: task_group_status\ndata: ")).toBe(true);
      // The empty group's status, then the status after the add; no run ended.
      const events = raw.text
        .split("\n")
        .filter((line) => line.startsWith("data: "))
        .map(
          (line) =>
            JSON.parse(line.slice("data: ".length)) as { type: string; status?: { is_active: boolean } },
        );
      expect(events.map((e) => [e.type, e.status?.is_active])).toEqual([
        ["task_group_status", false],
        ["task_group_status", true],
      ]);
    } finally {
      await slow.close();
    }
  });

  it("ends after `timeout` seconds", async () => {
    // An hour here is 36 s; the timeout ends the stream long before.
    const slow = await startTestSim({ time_scale: 0.01, run_duration_ms: 60_000 });
    try {
      const api = sdk(slow);
      const group = await api.taskGroup.create({});
      await api.taskGroup.addRuns(group.taskgroup_id, { inputs: inputs(1) });
      const started = Date.now();
      const events = await collect(await api.taskGroup.events(group.taskgroup_id, { timeout: 0.2 }));
      expect(Date.now() - started).toBeGreaterThanOrEqual(190);
      expect(events.map((e) => e.type)).toEqual(["task_group_status", "task_group_status"]);
    } finally {
      await slow.close();
    }
  });
});

describe("errors arrive as the SDK's classes", () => {
  const UNKNOWN_GROUP = "tgrp_00000000000000000000000000000000";

  it("401 on every endpoint without the right key", async () => {
    const group = await client.taskGroup.create({});
    const wrong = sdk(sim, { apiKey: "wrong" });
    const id = group.taskgroup_id;
    const calls: (() => Promise<unknown>)[] = [
      () => wrong.taskGroup.create({}),
      () => wrong.taskGroup.retrieve(id),
      () => wrong.taskGroup.addRuns(id, { inputs: inputs(1) }),
      () => wrong.taskGroup.events(id),
      () => wrong.taskGroup.getRuns(id),
      () => wrong.taskGroup.retrieveRun("trun_x", { taskgroup_id: id }),
    ];
    for (const attempt of calls) {
      const error = await expectRejects(attempt(), AuthenticationError);
      expect(error.error).toMatchObject({
        type: "error",
        error: { message: "Unauthorized: invalid or missing credentials" },
      });
    }
    expect((await client.taskGroup.retrieve(id)).status.num_task_runs).toBe(0);
  });

  it("404 for an unknown group on every endpoint, and for a run outside the group", async () => {
    const calls: (() => Promise<unknown>)[] = [
      () => client.taskGroup.retrieve(UNKNOWN_GROUP),
      () => client.taskGroup.addRuns(UNKNOWN_GROUP, { inputs: inputs(1) }),
      () => client.taskGroup.events(UNKNOWN_GROUP),
      () => client.taskGroup.getRuns(UNKNOWN_GROUP),
      () => client.taskGroup.retrieveRun("trun_x", { taskgroup_id: UNKNOWN_GROUP }),
    ];
    for (const attempt of calls) {
      const error = await expectRejects(attempt(), NotFoundError);
      expect(error.error).toEqual({
        type: "error",
        error: { ref_id: expect.stringMatching(UUID), message: "TaskGroup not found", detail: null },
      });
    }
    const group = await client.taskGroup.create({});
    const single = await client.taskRun.create({ input: "alone", processor: "lite" });
    const error = await expectRejects(
      client.taskGroup.retrieveRun(single.run_id, { taskgroup_id: group.taskgroup_id }),
      NotFoundError,
    );
    expect(error.error).toMatchObject({ error: { message: "Run id not found" } });
  });

  it("422 as FastAPI's HTTPValidationError, naming the input; nothing is created", async () => {
    const badMetadata = await expectRejects(
      client.taskGroup.create({ metadata: { "a-key-longer-than-16": "v" } }),
      UnprocessableEntityError,
    );
    expect(badMetadata.error).toEqual({
      detail: [expect.objectContaining({ loc: ["body", "metadata", "a-key-longer-than-16"] })],
    });

    const group = await client.taskGroup.create({});
    const id = group.taskgroup_id;
    const badInput = await expectRejects(
      client.taskGroup.addRuns(id, {
        inputs: [
          { input: "fine", processor: "lite" },
          { input: "no processor" } as Parallel.RunInput,
          { input: "bad domain", processor: "lite", source_policy: { include_domains: ["https://x.com/a"] } },
        ],
      }),
      UnprocessableEntityError,
    );
    const locs = (badInput.error as { detail: { loc: unknown[] }[] }).detail.map((issue) => issue.loc);
    expect(locs).toEqual([
      ["body", "inputs", 1, "processor"],
      ["body", "inputs", 2, "source_policy", "include_domains", 0],
    ]);

    const webhook = { url: receiver.url };
    const noBeta = await expectRejects(
      client.taskGroup.addRuns(id, {
        inputs: [
          { input: "a", processor: "lite", webhook },
          { input: "b", processor: "lite", webhook },
        ],
      }),
      UnprocessableEntityError,
    );
    expect(noBeta.error).toEqual({
      detail: [
        {
          loc: ["header", "parallel-beta"],
          msg: expect.stringContaining(WEBHOOK_BETA),
          type: "missing_beta",
        },
      ],
    });

    // An output schema broken in the default spec refuses every input that uses it.
    const badDefault = await expectRejects(
      client.taskGroup.addRuns(id, {
        inputs: inputs(2),
        default_task_spec: { output_schema: { type: "json", json_schema: { type: "array" } } },
      }),
      UnprocessableEntityError,
    );
    const defaultLocs = (badDefault.error as { detail: { loc: unknown[] }[] }).detail.map((i) =>
      i.loc.slice(0, 3),
    );
    expect(defaultLocs).toContainEqual(["body", "inputs", 1]);

    await expectRejects(client.taskGroup.events(id, { timeout: -1 }), UnprocessableEntityError);
    const badQuery = await call(sim, "GET", `/v1/tasks/groups/${id}/runs?include_input=maybe&status=done`);
    expect(badQuery.status).toBe(422);
    expect(badQuery.json).toEqual({
      detail: [
        expect.objectContaining({ loc: ["query", "include_input"] }),
        expect.objectContaining({ loc: ["query", "status"] }),
      ],
    });
    const notJson = await call(sim, "POST", `/v1/tasks/groups/${id}/runs`, { body: "{" });
    expect(notJson.status).toBe(422);

    expect((await client.taskGroup.retrieve(id)).status.num_task_runs).toBe(0);
  });

  it("400 for more than 1,000 inputs", async () => {
    const group = await client.taskGroup.create({});
    const error = await expectRejects(
      client.taskGroup.addRuns(group.taskgroup_id, { inputs: inputs(1001) }),
      BadRequestError,
    );
    expect(error.error).toMatchObject({ type: "error", error: { detail: { inputs: 1001, limit: 1000 } } });
    expect((await client.taskGroup.retrieve(group.taskgroup_id)).status.num_task_runs).toBe(0);
  });

  it("403 for an unknown processor in any input", async () => {
    const group = await client.taskGroup.create({});
    const error = await expectRejects(
      client.taskGroup.addRuns(group.taskgroup_id, {
        inputs: [...inputs(2), { input: "x", processor: "mega-ultra" }],
      }),
      PermissionDeniedError,
    );
    expect(error.error).toMatchObject({
      error: {
        message: "Forbidden: invalid processor in request",
        detail: { errors: [expect.objectContaining({ loc: ["body", "inputs", 2, "processor"] })] },
      },
    });
  });

  it("429: one add-runs call is one request against the create limit, whatever its size", async () => {
    const limited = await startTestSim({ rate_limit_per_minute: 2, run_duration_ms: 0 });
    try {
      const api = sdk(limited);
      const group = await api.taskGroup.create({});
      await api.taskRun.create({ input: "single", processor: "lite" });
      await api.taskGroup.addRuns(group.taskgroup_id, { inputs: inputs(500) });
      const error = await expectRejects(
        api.taskGroup.addRuns(group.taskgroup_id, { inputs: inputs(1) }),
        RateLimitError,
      );
      expect(Number(error.headers.get("retry-after"))).toBeGreaterThanOrEqual(59);
      await expectRejects(api.taskRun.create({ input: "over", processor: "lite" }), RateLimitError);
      // Creating groups and reading do not count.
      const other = await api.taskGroup.create({});
      await api.taskGroup.retrieve(other.taskgroup_id);

      const stats = limited.control.stats();
      expect(stats.rate_limited).toBe(2);
      expect(stats.runs.created).toBe(501);
      expect(stats.endpoints).toMatchObject({
        "POST /v1/tasks/runs": 2,
        "POST /v1/tasks/groups": 2,
        "GET /v1/tasks/groups/{id}": 1,
        "POST /v1/tasks/groups/{id}/runs": 2,
        "GET /v1/tasks/groups/{id}/events": 0,
      });
      expect(stats.statuses["POST /v1/tasks/groups/{id}/runs"]).toEqual({ "200": 1, "429": 1 });
      expect(stats.statuses["POST /v1/tasks/groups"]).toEqual({ "200": 2 });
    } finally {
      await limited.close();
    }
  });

  it("injected faults reach the group endpoints by their keys; throttle_rate covers add-runs as a create", async () => {
    const faulty = await startTestSim({
      error_rate_by_endpoint: { "GET /v1/tasks/groups/{id}": 1 },
      throttle_rate: 1,
    });
    try {
      const api = sdk(faulty);
      const group = await api.taskGroup.create({});
      const error = await expectRejects(api.taskGroup.retrieve(group.taskgroup_id), InternalServerError);
      expect(error.status).toBeGreaterThanOrEqual(500);
      const throttled = await expectRejects(
        api.taskGroup.addRuns(group.taskgroup_id, { inputs: inputs(1) }),
        RateLimitError,
      );
      expect(throttled.error).toMatchObject({ error: { detail: { fault: "throttle_rate" } } });
      expect(faulty.control.stats()).toMatchObject({
        injected_errors: 1,
        injected_throttles: 1,
        rate_limited: 0,
      });
    } finally {
      await faulty.close();
    }
  });
});

describe("reset", () => {
  it("forgets groups and ends their open streams", async () => {
    const handle = await startTestSim({ run_duration_ms: 60_000 });
    try {
      const api = sdk(handle);
      const group = await api.taskGroup.create({});
      await api.taskGroup.addRuns(group.taskgroup_id, { inputs: inputs(1) });
      const stream = collect(await api.taskGroup.events(group.taskgroup_id));
      handle.control.reset();
      expect((await stream).map((e) => e.type)).toEqual(["task_group_status", "task_group_status"]);
      await expectRejects(api.taskGroup.retrieve(group.taskgroup_id), NotFoundError);
    } finally {
      await handle.close();
    }
  });
});

describe("a large add-runs call", () => {
  it("lets the event loop turn while it checks its 1,000 inputs", async () => {
    // In-process (no socket): what runs between the call's steps is the event loop's alone.
    const simulator = createSimulator({ api_key: API_KEY, time_scale: 0.001 });
    try {
      const post = (path: string, body: unknown) =>
        simulator.app.fetch(
          new Request(`http://sim.test${path}`, {
            method: "POST",
            headers: { "x-api-key": API_KEY, "content-type": "application/json" },
            body: JSON.stringify(body),
          }),
        );
      const group = (await (await post("/v1/tasks/groups", {})).json()) as { taskgroup_id: string };
      // Every turn of the event loop while the call is handled: the moments another request (a
      // single create) could be answered. Held for the whole call, there are only the body's reads.
      let turns = 0;
      let answered = false;
      const count = () => {
        if (answered) return;
        turns++;
        setImmediate(count);
      };
      setImmediate(count);
      const added = await post(`/v1/tasks/groups/${group.taskgroup_id}/runs`, {
        inputs: inputs(1000, "big"),
      });
      answered = true;
      expect(added.status).toBe(200);
      expect(((await added.json()) as { run_ids: string[] }).run_ids).toHaveLength(1000);
      // One turn after each slice of inputs checked but the last (it was 0: held throughout).
      expect(turns).toBeGreaterThanOrEqual(1000 / ADD_RUNS_SLICE - 1);
    } finally {
      simulator.shutdown();
    }
  });
});
