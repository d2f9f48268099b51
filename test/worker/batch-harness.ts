// Batch tests: Parallel's Task Group API at the HTTP boundary (MSW), recording every call, and the
// Worker's fetch handler called with a WORK_QUEUE that keeps what it is sent, so a test works the
// submission messages itself through the real queue consumer.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { CONSUMER_BATCH_SIZE } from "../../src/cron/consumer";
import type { WorkMessage } from "../../src/cron/work";
import worker from "../../src/index";
import { asInvocation } from "./d1-limits";
import { PARALLEL, RELAY, type RecordedCall } from "./harness";
import { capturingQueue, consume } from "./queue-harness";
import { network } from "./setup";

export interface GroupRun {
  run_id: string;
  taskgroup_id: string;
  metadata: Record<string, unknown>;
  input: unknown;
  processor: string;
  /** Set by `complete`: the run is finished at Parallel, and the stream brings this output when asked. */
  output?: Record<string, unknown>;
}

type AddReply = (call: RecordedCall, made: GroupRun[]) => Response | undefined;

/**
 * Parallel's Task Groups, as the reference (§2.6) and the simulator describe them: a group, add-runs
 * of up to 1,000 inputs returning run ids in input order and a runs cursor, and the runs stream
 * (`task_run.state` per run, resumable after a cursor). `add` may answer otherwise: given the runs
 * the call made (already stored, as Parallel would have), it returns a response to send instead,
 * which is how a lost answer is made.
 */
export function fakeTaskGroups(
  options: { add?: AddReply; refuseAdd?: (call: RecordedCall) => Response | undefined } = {},
) {
  const calls: RecordedCall[] = [];
  const groups = new Map<string, GroupRun[]>();
  /** The runs stream reads that asked for outputs (the bulk result fetch), by URL. */
  const outputReads: string[] = [];
  const record = async (
    request: { method: string; headers: Headers; text(): Promise<string> },
    path: string,
  ) => {
    const text = request.method === "GET" ? "" : await request.text();
    const call: RecordedCall = {
      method: request.method,
      path,
      headers: request.headers,
      body: text ? JSON.parse(text) : null,
    };
    calls.push(call);
    return call;
  };
  const status = (runs: GroupRun[]) => ({
    num_task_runs: runs.length,
    task_run_status_counts: { queued: runs.length },
    is_active: runs.length > 0,
    status_message: "",
    modified_at: new Date().toISOString(),
  });
  network.use(
    http.post(`${PARALLEL}/v1/tasks/groups`, async ({ request }) => {
      await record(request, "/v1/tasks/groups");
      const id = `tgrp_${crypto.randomUUID().replaceAll("-", "")}`;
      groups.set(id, []);
      return HttpResponse.json({
        taskgroup_id: id,
        status: status([]),
        metadata: null,
        created_at: new Date().toISOString(),
      });
    }),
    http.post(`${PARALLEL}/v1/tasks/groups/:id/runs`, async ({ request, params }) => {
      const id = String(params.id);
      const call = await record(request, `/v1/tasks/groups/${id}/runs`);
      const refused = options.refuseAdd?.(call);
      if (refused) return refused;
      const runs = groups.get(id);
      if (!runs)
        return HttpResponse.json(
          { type: "error", error: { message: "TaskGroup not found" } },
          { status: 404 },
        );
      const body = call.body as {
        inputs: Array<{ input: unknown; metadata: Record<string, unknown>; processor: string }>;
      };
      const cursor = runs.length === 0 ? null : String(runs.length);
      const made = body.inputs.map((input) => ({
        run_id: `trun_${crypto.randomUUID().replaceAll("-", "")}`,
        taskgroup_id: id,
        metadata: input.metadata,
        input: input.input,
        processor: input.processor,
      }));
      runs.push(...made);
      const instead = options.add?.(call, made);
      if (instead) return instead;
      return HttpResponse.json({
        status: status(runs),
        run_ids: made.map((r) => r.run_id),
        run_cursor: cursor,
        event_cursor: cursor,
      });
    }),
    http.get(`${PARALLEL}/v1/tasks/groups/:id/runs`, async ({ request, params }) => {
      const id = String(params.id);
      await record(request, `/v1/tasks/groups/${id}/runs`);
      const runs = groups.get(id) ?? [];
      const query = new URL(request.url).searchParams;
      const after = Number(query.get("last_event_id") ?? 0);
      const withOutput = query.get("include_output") === "true";
      if (withOutput) outputReads.push(request.url);
      const now = new Date().toISOString();
      const frames = runs.slice(after).map((run, i) => {
        const event = {
          type: "task_run.state",
          event_id: String(after + i + 1),
          run: {
            run_id: run.run_id,
            interaction_id: run.run_id,
            status: run.output ? "completed" : "queued",
            is_active: !run.output,
            processor: run.processor,
            metadata: run.metadata,
            taskgroup_id: id,
            created_at: now,
            modified_at: now,
          },
          input: null,
          output: withOutput && run.output ? run.output : null,
        };
        return `event: task_run.state\ndata: ${JSON.stringify(event)}\n\n`;
      });
      return new HttpResponse(frames.join(""), { headers: { "content-type": "text/event-stream" } });
    }),
  );
  const byPath = (method: string, suffix: RegExp) =>
    calls.filter((c) => c.method === method && suffix.test(c.path));
  return {
    calls,
    groups,
    creates: () => byPath("POST", /^\/v1\/tasks\/groups$/),
    adds: () => byPath("POST", /^\/v1\/tasks\/groups\/[^/]+\/runs$/),
    /** Reads of the runs stream, both the submission's reconciling reads and the bulk result fetch. */
    streams: () => byPath("GET", /^\/v1\/tasks\/groups\/[^/]+\/runs$/),
    /** The runs stream reads made without outputs: the submission reconciling a chunk in doubt. */
    reconcilingReads: () => byPath("GET", /^\/v1\/tasks\/groups\/[^/]+\/runs$/).length - outputReads.length,
    outputReads,
    /** Finishes a run at Parallel with this output (what the stream brings when outputs are asked for). */
    complete: (runId: string, output: Record<string, unknown>) => {
      const run = [...groups.values()].flat().find((r) => r.run_id === runId);
      if (!run) throw new Error(`no run ${runId} in any group`);
      run.output = output;
    },
    allRuns: () => [...groups.values()].flat(),
  };
}

/** The Worker's fetch handler with a capturing WORK_QUEUE (and its background work waited for). */
export function batchClient() {
  const captured = capturingQueue();
  const bindings = { ...env, WORK_QUEUE: captured.queue };
  const call = async (path: string, init: RequestInit = {}) => {
    const ctx = createExecutionContext();
    const response = await worker.fetch(new Request(`${RELAY}${path}`, init), bindings, ctx);
    await waitOnExecutionContext(ctx);
    return response;
  };
  const post = (path: string, body: unknown, headers: Record<string, string>) =>
    call(path, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
    });
  return { captured, bindings, call, post };
}

/**
 * Works every submission message (and each follow-up it sends) through the queue consumer, each
 * consumer batch as one invocation within the Free plan's 50 D1 calls. Returns how many messages.
 */
export async function workSubmissions(
  captured: ReturnType<typeof capturingQueue>,
  options: { now?: () => Date; maxRounds?: number } = {},
): Promise<{ messages: number; reports: Array<Record<string, Record<string, number | string>>> }> {
  let messages = 0;
  const reports: Array<Record<string, Record<string, number | string>>> = [];
  for (let round = 0; round < (options.maxRounds ?? 50); round++) {
    const due = captured.take().map((m) => m.body as WorkMessage);
    if (due.length === 0) break;
    messages += due.length;
    // One consumer batch, one invocation: its D1 calls counted against the Free plan's 50.
    for (let i = 0; i < due.length; i += CONSUMER_BATCH_SIZE) {
      const { report } = await asInvocation("queue", 50, () =>
        consume(due.slice(i, i + CONSUMER_BATCH_SIZE), {
          queue: captured.queue,
          env: { ...env, SUBREQUEST_BUDGET: "50" },
          ...(options.now ? { now: options.now } : {}),
        }),
      );
      reports.push(report);
    }
  }
  return { messages, reports };
}
