// Parallel's Task Group endpoints (reference §2.6; SDK 1.3.3 `client.taskGroup.*`): create,
// retrieve, add runs, the events stream, the runs stream, retrieve a run. A group's runs are the
// RunStore's ordinary runs, so /v1/tasks/runs/{id}, /result, run events and webhooks serve them.
//
// Errors: 404 "TaskGroup not found" and 401/403/429/5xx in Parallel's ErrorResponse envelope; a
// 422 as FastAPI's HTTPValidationError `{"detail":[{loc,msg,type}]}`, which is what the OAS
// declares for these endpoints (the run endpoints declare ErrorResponse).

import { Hono } from "hono";
import { z } from "zod";
import { endpoint, takeCreateSlot } from "./api.ts";
import type { SimContext } from "./context.ts";
import {
  ADD_GROUP_RUNS,
  CREATE_GROUP,
  GROUP_EVENTS,
  GROUP_RUNS,
  RETRIEVE_GROUP,
  RETRIEVE_GROUP_RUN,
} from "./endpoints.ts";
import {
  errorBody,
  errorResponse,
  httpValidationError,
  jsonResponse,
  MESSAGES,
  type ValidationIssue,
} from "./errors.ts";
import { SSE_KEEPALIVE_MS } from "./events.ts";
import { parseCursor } from "./groups.ts";
import { toTaskRun } from "./runs.ts";
import { liveStreamResponse, MIN_STREAM_MS, snapshotStreamResponse } from "./sse.ts";
import type { ErrorEvent, RunStatus, TaskGroupRunResponse, TaskRunEvent } from "./types.ts";
import { type CreateCheck, checkCreateRequest, FIELD_BASIS_BETA, runInputSchema } from "./validation.ts";

/** Inputs per add-runs call (OAS: "Up to 1,000 runs can be specified per request"). */
export const MAX_GROUP_INPUTS = 1000;
/**
 * Inputs checked between two turns of the event loop: a 1,000-input call held it for 0.2-0.5 s on
 * a loaded machine, and every other request (a single create) waited that long.
 */
export const ADD_RUNS_SLICE = 100;
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
/** "The connection will remain open for up to an hour as long as at least one run … is still active." */
export const GROUP_STREAM_MS = 3_600_000;
/** Runs per chunk of the runs stream. */
const RUNS_PER_CHUNK = 10;

const RUN_STATUSES: readonly RunStatus[] = [
  "queued",
  "action_required",
  "running",
  "completed",
  "failed",
  "cancelling",
  "cancelled",
];

const createGroupBody = z.object({ metadata: runInputSchema.shape.metadata });
// Each input is checked as a whole run input (with the default spec merged in) by checkCreateRequest.
const addRunsBody = z.object({
  inputs: z.array(z.unknown()),
  default_task_spec: runInputSchema.shape.task_spec,
});

type Accepted = Extract<CreateCheck, { ok: true }>;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function zodIssues(error: z.ZodError, prefix: (string | number)[]): ValidationIssue[] {
  return error.issues.map((issue) => ({
    loc: [...prefix, ...issue.path.map((part) => (typeof part === "symbol" ? String(part) : part))],
    msg: issue.message,
    type: issue.code,
  }));
}

/** The parsed JSON body, or the 422 Response to answer when it is not JSON. */
async function readJson(request: Request): Promise<unknown> {
  try {
    return JSON.parse(await request.text());
  } catch {
    return httpValidationError([{ loc: ["body"], msg: "the body is not valid JSON", type: "json_invalid" }]);
  }
}

/** A boolean query parameter (`true`/`false`, `1`/`0`, as the SDK and curl send them); null if neither. */
function booleanQuery(raw: string | undefined, fallback: boolean): boolean | null {
  if (raw === undefined) return fallback;
  const value = raw.toLowerCase();
  if (value === "true" || value === "1") return true;
  if (value === "false" || value === "0") return false;
  return null;
}

function queryIssue(name: string, msg: string, type: string): ValidationIssue {
  return { loc: ["query", name], msg, type };
}

/** An unknown or malformed last_event_id: the stream says so in an `error` event and ends. */
function cursorError(cursor: string | undefined): ErrorEvent {
  return errorBody("Invalid last_event_id: not a cursor of this stream", { last_event_id: cursor ?? null });
}

/**
 * Every input checked as POST /v1/tasks/runs checks a body, with `default_task_spec` standing in
 * for a missing `task_spec`. One bad input refuses the call: 403 if every problem is an unknown
 * processor, else 422 listing every problem at `["body", "inputs", i, …]`.
 */
async function checkInputs(
  inputs: unknown[],
  defaultSpec: unknown,
  betaHeader: string | undefined,
): Promise<{ ok: true; accepted: Accepted[] } | { ok: false; response: Response }> {
  const accepted: Accepted[] = [];
  const issues: ValidationIssue[] = [];
  const seen = new Set<string>();
  let onlyProcessors = true;
  for (const [index, raw] of inputs.entries()) {
    if (index > 0 && index % ADD_RUNS_SLICE === 0) await nextTurn();
    const input =
      defaultSpec != null && isRecord(raw) && raw.task_spec == null
        ? { ...raw, task_spec: defaultSpec }
        : raw;
    const check = checkCreateRequest(input, betaHeader);
    if (check.ok) {
      accepted.push(check);
      continue;
    }
    if (check.status !== 403) onlyProcessors = false;
    for (const issue of check.issues) {
      const [where, ...rest] = issue.loc;
      if (where === "body") {
        issues.push({ ...issue, loc: ["body", "inputs", index, ...rest] });
      } else {
        // A header problem (the webhook beta) is the call's, not the input's: list it once.
        const key = JSON.stringify([issue.loc, issue.msg]);
        if (!seen.has(key)) issues.push(issue);
        seen.add(key);
      }
    }
  }
  if (issues.length === 0) return { ok: true, accepted };
  return {
    ok: false,
    response: onlyProcessors
      ? errorResponse(403, MESSAGES.invalidProcessor, { errors: issues })
      : httpValidationError(issues),
  };
}

export function taskGroupApi(sim: SimContext): Hono {
  const app = new Hono();
  const groupNotFound = (): Response => errorResponse(404, MESSAGES.groupNotFound);

  app.post("/v1/tasks/groups", endpoint(sim, CREATE_GROUP), async (c) => {
    const body = await readJson(c.req.raw);
    if (body instanceof Response) return body;
    const parsed = createGroupBody.safeParse(body);
    if (!parsed.success) return httpValidationError(zodIssues(parsed.error, ["body"]));
    const group = sim.groups.create(parsed.data.metadata ?? null);
    return jsonResponse(sim.groups.view(group), 200);
  });

  app.get("/v1/tasks/groups/:id", endpoint(sim, RETRIEVE_GROUP), (c) => {
    const group = sim.groups.get(c.req.param("id"));
    return group ? jsonResponse(sim.groups.view(group), 200) : groupNotFound();
  });

  app.post("/v1/tasks/groups/:id/runs", endpoint(sim, ADD_GROUP_RUNS), async (c) => {
    // The whole call is one request against the create rate limit, whatever its size.
    const limited = takeCreateSlot(sim);
    if (limited) return limited;
    // Accepted for the SDK's sake; the status answered is always fresh.
    if (booleanQuery(c.req.query("refresh_status"), true) === null) {
      return httpValidationError([queryIssue("refresh_status", "must be a boolean", "bool_parsing")]);
    }
    const body = await readJson(c.req.raw);
    if (body instanceof Response) return body;
    const parsed = addRunsBody.safeParse(body);
    if (!parsed.success) return httpValidationError(zodIssues(parsed.error, ["body"]));
    const group = sim.groups.get(c.req.param("id"));
    if (!group) return groupNotFound();
    const { inputs, default_task_spec: defaultSpec } = parsed.data;
    if (inputs.length > MAX_GROUP_INPUTS) {
      return errorResponse(400, MESSAGES.tooManyInputs, { inputs: inputs.length, limit: MAX_GROUP_INPUTS });
    }
    const checked = await checkInputs(inputs, defaultSpec, c.req.header("parallel-beta"));
    if (!checked.ok) return checked.response;
    // Created in one go: a run's first status change (its timer) must find it in the group.
    const runs = checked.accepted.map((check) =>
      sim.runs.create(check.input, check.processor, {
        warnings: check.warnings,
        elementBasis: check.betas.has(FIELD_BASIS_BETA),
        taskgroupId: group.id,
      }),
    );
    const cursors = sim.groups.add(group, runs);
    const answer: TaskGroupRunResponse = {
      status: sim.groups.status(group),
      run_ids: runs.map((run) => run.runId),
      run_cursor: cursors.runCursor,
      event_cursor: cursors.eventCursor,
    };
    return jsonResponse(answer, 200);
  });

  app.get("/v1/tasks/groups/:id/events", endpoint(sim, GROUP_EVENTS), (c) => {
    const group = sim.groups.get(c.req.param("id"));
    if (!group) return groupNotFound();
    const rawTimeout = c.req.query("timeout");
    let timeoutMs = Number.POSITIVE_INFINITY;
    if (rawTimeout !== undefined) {
      const seconds = rawTimeout.trim() === "" ? Number.NaN : Number(rawTimeout);
      if (!Number.isFinite(seconds) || seconds < 0) {
        return httpValidationError([
          queryIssue("timeout", "must be a number of seconds ≥ 0", "float_parsing"),
        ]);
      }
      timeoutMs = seconds * 1000;
    }
    const { time_scale: scale } = sim.config();
    const cursor = c.req.query("last_event_id");
    const skip = parseCursor(cursor, group.events.length);
    const live = {
      signal: c.req.raw.signal,
      openStreams: sim.openStreams,
      keepaliveMs: SSE_KEEPALIVE_MS * scale,
      // The hour is Parallel's time (scaled); `timeout` is the client's, in wall-clock seconds.
      lifetimeMs: Math.min(Math.max(MIN_STREAM_MS, GROUP_STREAM_MS * scale), timeoutMs),
    };
    return liveStreamResponse(live, (channel) => {
      if (skip === null) {
        channel.send(cursorError(cursor));
        channel.close();
        return;
      }
      let sent = skip;
      const flush = (): void => {
        for (; sent < group.events.length; sent++) {
          const event = group.events[sent];
          if (event) channel.send(event);
        }
        // Open only while a run is active: the last status sent says is_active: false.
        if (group.active === 0) channel.close();
      };
      flush();
      channel.onClose(sim.groups.subscribe(group, flush));
    });
  });

  app.get("/v1/tasks/groups/:id/runs", endpoint(sim, GROUP_RUNS), (c) => {
    const group = sim.groups.get(c.req.param("id"));
    if (!group) return groupNotFound();
    const includeInput = booleanQuery(c.req.query("include_input"), false);
    const includeOutput = booleanQuery(c.req.query("include_output"), false);
    const status = c.req.query("status");
    const issues: ValidationIssue[] = [];
    if (includeInput === null) issues.push(queryIssue("include_input", "must be a boolean", "bool_parsing"));
    if (includeOutput === null)
      issues.push(queryIssue("include_output", "must be a boolean", "bool_parsing"));
    if (status !== undefined && !RUN_STATUSES.includes(status as RunStatus)) {
      issues.push(queryIssue("status", `must be one of ${RUN_STATUSES.join(", ")}`, "enum"));
    }
    if (issues.length > 0) return httpValidationError(issues);

    // A snapshot: the runs in the group now, each in its state when the client reads it.
    const end = group.runIds.length;
    const cursor = c.req.query("last_event_id");
    const skip = parseCursor(cursor, end);
    let position = skip ?? end;
    let cursorRefused = skip === null;
    return snapshotStreamResponse({ signal: c.req.raw.signal, openStreams: sim.openStreams }, () => {
      if (cursorRefused) {
        cursorRefused = false;
        return [cursorError(cursor)];
      }
      if (position >= end) return null;
      const events: TaskRunEvent[] = [];
      for (const stop = Math.min(end, position + RUNS_PER_CHUNK); position < stop; position++) {
        const runId = group.runIds[position];
        // A run forgotten past max_runs is left out.
        const run = runId === undefined ? undefined : sim.runs.get(runId);
        if (!run || (status !== undefined && run.status !== status)) continue;
        events.push({
          type: "task_run.state",
          event_id: String(position + 1),
          run: toTaskRun(run),
          input: includeInput ? run.input : null,
          output:
            includeOutput && run.status === "completed" ? sim.runs.outputFor(run, run.elementBasis) : null,
        });
      }
      return events;
    });
  });

  app.get("/v1/tasks/groups/:id/runs/:run_id", endpoint(sim, RETRIEVE_GROUP_RUN), (c) => {
    const group = sim.groups.get(c.req.param("id"));
    if (!group) return groupNotFound();
    const run = sim.runs.get(c.req.param("run_id"));
    if (!run || run.taskgroupId !== group.id) return errorResponse(404, MESSAGES.runNotFound);
    return jsonResponse(toTaskRun(run), 200);
  });

  return app;
}
