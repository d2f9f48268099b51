// The one place that talks to Parallel: the official SDK, with every failure sorted into what the
// caller should do about it. Retries are not the SDK's job here: state lives in D1 and the sweeper
// retries with backoff, so the SDK's own retries are off.
import Parallel, { APIConnectionError, APIError } from "parallel-web";
import type {
  TaskGroup,
  TaskGroupGetRunsParams,
  TaskGroupGetRunsResponse,
  TaskGroupRunResponse,
} from "parallel-web/resources/task-group";
import type {
  TaskRun,
  TaskRunCreateParams,
  TaskRunEventsResponse,
  TaskRunResult,
} from "parallel-web/resources/task-run";
import type { Config } from "../env";
import { requireSetting } from "../env";
import { betasFor } from "./betas";

export type {
  TaskGroup,
  TaskGroupGetRunsResponse,
  TaskGroupRunResponse,
  TaskRun,
  TaskRunEventsResponse,
  TaskRunResult,
};
export type CreateRunBody = Omit<TaskRunCreateParams, "betas">;
/** The runs stream's query without the cursor (passed on its own). */
export type TaskGroupRunsQuery = Omit<TaskGroupGetRunsParams, "last_event_id">;

export type ParallelFailure =
  /** Parallel refused the request (403, 422 or another 4xx): retrying will not help. */
  | { ok: false; kind: "rejected"; status: number; message: string }
  /**
   * 401 or 402: Parallel refused taskrelay's own API key or account (a bad or rotated
   * PARALLEL_API_KEY, no credit). The operator's problem, not the request's: the same call works once
   * they fix it.
   */
  | { ok: false; kind: "operator"; status: 401 | 402; message: string }
  /** 404: the run does not exist, or (for /result) it failed. */
  | { ok: false; kind: "not_found"; status: 404; message: string }
  /** 408 from /result: the run is still active. */
  | { ok: false; kind: "still_active"; status: 408; message: string }
  /** 429, 5xx, a timeout or a network error: try again later, after retryAfterMs when given. */
  | { ok: false; kind: "transient"; status: number | null; message: string; retryAfterMs?: number };

export type ParallelOutcome<T> = { ok: true; value: T } | ParallelFailure;

export interface ParallelGateway {
  createRun(body: CreateRunBody): Promise<ParallelOutcome<TaskRun>>;
  getRun(parallelRunId: string): Promise<ParallelOutcome<TaskRun>>;
  /**
   * Fetches the result of a run believed finished; waits at most `timeoutSeconds` at Parallel. The
   * 200 comes back unread (a TaskRunResult as JSON): its body may be tens of MB, so the caller
   * streams it (services/result-body.ts) rather than parse it whole. Errors are sorted as for any call.
   */
  getResult(parallelRunId: string, timeoutSeconds?: number): Promise<ParallelOutcome<Response>>;
  streamEvents(
    parallelRunId: string,
    signal?: AbortSignal,
  ): Promise<ParallelOutcome<AsyncIterable<TaskRunEventsResponse>>>;
  /** A Task Group: one per batch (services/batch-submission.ts). */
  createTaskGroup(metadata: Record<string, string>): Promise<ParallelOutcome<TaskGroup>>;
  getTaskGroup(taskgroupId: string): Promise<ParallelOutcome<TaskGroup>>;
  /**
   * Adds up to 1,000 runs to a group in one call (one request against Parallel's rate limit). Each
   * input is a full create body; the betas are the union of what the inputs need.
   */
  addTaskGroupRuns(
    taskgroupId: string,
    inputs: CreateRunBody[],
    defaultTaskSpec?: CreateRunBody["task_spec"],
  ): Promise<ParallelOutcome<TaskGroupRunResponse>>;
  /** The group's runs stream (`task_run.state` per run, in the order they were added), from a cursor. */
  taskGroupRuns(
    taskgroupId: string,
    query: TaskGroupRunsQuery,
    lastEventId?: string | null,
    signal?: AbortSignal,
  ): Promise<ParallelOutcome<AsyncIterable<TaskGroupGetRunsResponse>>>;
}

const REQUEST_TIMEOUT_MS = 15_000;

type TaskGroupAddRunsBetas = NonNullable<Parameters<Parallel["taskGroup"]["addRuns"]>[1]["betas"]>;

// One gateway per configuration and isolate: building the SDK client costs as much as a call.
const gateways = new WeakMap<Config, ParallelGateway>();

export function createParallelGateway(config: Config): ParallelGateway {
  let gateway = gateways.get(config);
  if (!gateway) {
    gateway = buildGateway(config);
    gateways.set(config, gateway);
  }
  return gateway;
}

function buildGateway(config: Config): ParallelGateway {
  const client = new Parallel({
    apiKey: requireSetting(config, "PARALLEL_API_KEY"),
    baseURL: config.PARALLEL_BASE_URL,
    maxRetries: 0,
    timeout: REQUEST_TIMEOUT_MS,
    // The SDK reads this and PARALLEL_CUSTOM_HEADERS from process.env when present; pass the global
    // fetch explicitly so a test's HTTP-boundary mock sees every call.
    fetch: (input, init) => fetch(input, init),
  });

  return {
    createRun: (body) => call(() => client.taskRun.create({ ...body, betas: betasFor(body) })),
    getRun: (id) => call(() => client.taskRun.retrieve(id)),
    getResult: (id, timeoutSeconds = 10) =>
      call(() =>
        client.taskRun
          .result(id, { timeout: timeoutSeconds }, { timeout: (timeoutSeconds + 15) * 1000 })
          .asResponse(),
      ),
    streamEvents: (id, signal) =>
      call(() => client.taskRun.events(id, { timeout: 600_000, ...(signal ? { signal } : {}) })),
    createTaskGroup: (metadata) => call(() => client.taskGroup.create({ metadata })),
    getTaskGroup: (id) => call(() => client.taskGroup.retrieve(id)),
    addTaskGroupRuns: (id, inputs, defaultTaskSpec) =>
      call(() =>
        client.taskGroup.addRuns(
          id,
          {
            inputs,
            ...(defaultTaskSpec ? { default_task_spec: defaultTaskSpec } : {}),
            betas: [...new Set(inputs.flatMap(betasFor))] as TaskGroupAddRunsBetas,
          },
          // 1,000 inputs are a large body for Parallel to check: more time than a single create.
          { timeout: 2 * REQUEST_TIMEOUT_MS },
        ),
      ),
    taskGroupRuns: (id, query, lastEventId, signal) =>
      call(() =>
        client.taskGroup.getRuns(
          id,
          { ...query, ...(lastEventId ? { last_event_id: lastEventId } : {}) },
          { timeout: 600_000, ...(signal ? { signal } : {}) },
        ),
      ),
  };
}

async function call<T>(request: () => Promise<T>): Promise<ParallelOutcome<T>> {
  try {
    return { ok: true, value: await request() };
  } catch (error) {
    return classifyParallelError(error);
  }
}

export function classifyParallelError(error: unknown): ParallelFailure {
  if (error instanceof APIConnectionError || !(error instanceof APIError) || error.status === undefined) {
    const message = error instanceof Error ? error.message : String(error);
    return { ok: false, kind: "transient", status: null, message: `Could not reach Parallel: ${message}` };
  }
  const status = error.status;
  const message = parallelMessage(error);
  if (status === 404) return { ok: false, kind: "not_found", status, message };
  if (status === 408) return { ok: false, kind: "still_active", status, message };
  if (status === 401 || status === 402) return { ok: false, kind: "operator", status, message };
  if (status === 429 || status >= 500) {
    const retryAfterMs = retryAfter(error.headers);
    return {
      ok: false,
      kind: "transient",
      status,
      message,
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    };
  }
  return { ok: false, kind: "rejected", status, message };
}

/** Parallel's own words: `error.message` of its error envelope, else the SDK's message. */
function parallelMessage(error: APIError): string {
  const body = error.error as { error?: { message?: unknown }; detail?: unknown } | undefined;
  const inner = body?.error?.message;
  if (typeof inner === "string" && inner) return inner;
  return error.message;
}

function retryAfter(headers: Headers | undefined): number | undefined {
  const ms = headers?.get("retry-after-ms");
  if (ms && Number.isFinite(Number(ms))) return Number(ms);
  const value = headers?.get("retry-after");
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return seconds * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}
