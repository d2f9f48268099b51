// Runs: create (store first, then submit to Parallel), read, list, and wait for a result.
import { canonicalJson } from "../canonical-json";
import { findKey } from "../db/keys";
import { insertRunEvent, listRunEvents, type RunEvent } from "../db/run-events";
import { stepGuard } from "../db/run-states";
import {
  changeRun,
  changeRunStatements,
  findOwnedRun,
  findRun,
  findRunByIdempotencyKey,
  insertRun,
  isTerminal,
  listRuns as listRunRows,
  ownsInteraction,
  type Run,
  type RunChanges,
  type RunStatus,
  type RunSummary,
  returnedRun,
} from "../db/runs";
import { requireSetting } from "../env";
import { ApiError, validationFailed } from "../errors";
import { newId, sha256Hex } from "../ids";
import type { CreateRunBody, TaskRun } from "../parallel/client";
import { RUN_ID_METADATA_KEY, runWarnings } from "../parallel/task-spec-checks";
import type { RunRequest } from "../schemas/runs";
import { isKnownParallelStatus, recordedStatus, warnUnknownStatus } from "./completion";
import type { ServiceContext } from "./context";
import {
  noteOperatorProblem,
  type OperatorFailure,
  operatorReason,
  resolveOperatorProblem,
} from "./operator-alerts";
import { hasStoredOutput } from "./outputs";
import { beforeIdOf, decodeSequenceCursor, type PageRequest, toPage, toSequencePage } from "./pages";
import { onRunFinished } from "./run-finished";
import { checkRunRequest } from "./run-request";
import {
  addMs,
  deadlineAt,
  finishDueAt,
  firstPollAt,
  LEASE_MS,
  notAfter,
  retryAt,
  runDeadline,
} from "./timing";

export const WEBHOOK_PATH = "/webhooks/parallel";

export interface CreateRunInput {
  apiKeyId: string;
  request: RunRequest;
  idempotencyKey?: string | undefined;
  scheduleId?: string | undefined;
}

export interface CreateRunResult {
  run: Run;
  /** True when an Idempotency-Key matched an earlier request: no new run was made. */
  replayed: boolean;
}

export async function createRun(ctx: ServiceContext, input: CreateRunInput): Promise<CreateRunResult> {
  const problems = checkRunRequest(input.request, ctx.config);
  if (problems.length > 0) throw validationFailed(problems);
  // Fail on missing configuration before anything is stored.
  requireSetting(ctx.config, "PARALLEL_API_KEY");
  requireSetting(ctx.config, "PUBLIC_BASE_URL");

  const requestHash = input.idempotencyKey
    ? await sha256Hex(canonicalJson(hashedRequest(input.request)))
    : null;
  if (input.idempotencyKey) {
    const earlier = await findRunByIdempotencyKey(ctx.db, input.apiKeyId, input.idempotencyKey);
    if (earlier) return replay(earlier, requestHash);
  }

  const previous = input.request.previous_interaction_id;
  // All tenants share one Parallel account: another tenant's interaction would hand over its research.
  if (previous && !(await ownsInteraction(ctx.db, input.apiKeyId, previous))) {
    throw new ApiError("not_found", `No run of yours has the interaction id ${previous}.`, [
      { path: "previous_interaction_id", message: "not the interaction id of one of your runs" },
    ]);
  }

  const now = ctx.now();
  const run = newRun(input, requestHash, now);
  try {
    await ctx.db.batch([insertRun(ctx.db, run), insertRunEvent(ctx.db, run.id, run.created_at, "stored")]);
  } catch (error) {
    // Two requests with the same Idempotency-Key at once: the loser answers with the winner's run.
    if (input.idempotencyKey && String(error).includes("UNIQUE")) {
      const winner = await findRunByIdempotencyKey(ctx.db, input.apiKeyId, input.idempotencyKey);
      if (winner) return replay(winner, requestHash);
    }
    throw error;
  }
  const submitted = await submitRun(ctx, run);
  if (submitted.status === "rejected") {
    throw new ApiError("parallel_rejected", submitted.error?.message ?? "Parallel refused the run.", [
      {
        message: submitted.error?.message ?? "",
        run_id: submitted.id,
        parallel_status: submitted.error?.detail,
      },
    ]);
  }
  return { run: submitted, replayed: false };
}

/** `callback: null` means no callback, as an absent one does: the same request for an Idempotency-Key. */
function hashedRequest(request: RunRequest): RunRequest {
  if (request.callback !== null) return request;
  const { callback: _none, ...rest } = request;
  return rest;
}

function replay(earlier: Run, requestHash: string | null): CreateRunResult {
  if (earlier.request_hash !== requestHash) {
    throw new ApiError(
      "idempotency_conflict",
      "This Idempotency-Key was already used with a different request body; use a new key for a new run.",
      [{ message: "request body differs from the first use of this key", run_id: earlier.id }],
    );
  }
  return { run: earlier, replayed: true };
}

const nullIfEmpty = <T>(list: T[]): T[] | null => (list.length > 0 ? list : null);

function newRun(input: CreateRunInput, requestHash: string | null, now: Date): Run {
  const at = now.toISOString();
  const { request } = input;
  return {
    id: newId("run", now),
    api_key_id: input.apiKeyId,
    schedule_id: input.scheduleId ?? null,
    parallel_run_id: null,
    interaction_id: null,
    status: "submitting",
    processor: request.processor,
    input: request.input,
    task_spec: request.task_spec ?? null,
    metadata: request.metadata ?? null,
    source_policy: request.source_policy ?? null,
    previous_interaction_id: request.previous_interaction_id ?? null,
    enable_events: request.enable_events ?? null,
    mcp_servers: request.mcp_servers ?? null,
    callback_url: request.callback?.url ?? null,
    idempotency_key: input.idempotencyKey ?? null,
    request_hash: requestHash,
    output: null,
    warnings: null,
    relay_warnings: nullIfEmpty(runWarnings(request)),
    error: null,
    created_at: at,
    updated_at: at,
    submitted_at: null,
    finished_at: null,
    result_stored_at: null,
    deadline_at: null,
    attempts: 0,
    not_found_count: 0,
    // The request submits it now; should this worker die first, the sweeper submits it after the lease.
    next_sweep_at: addMs(now, LEASE_MS).toISOString(),
    lease_until: addMs(now, LEASE_MS).toISOString(),
  };
}

/** The create body sent to Parallel. Its metadata carries our run id, so a webhook can always be matched. */
export function parallelCreateBody(
  ctx: ServiceContext,
  run: Pick<
    Run,
    | "id"
    | "processor"
    | "input"
    | "task_spec"
    | "metadata"
    | "source_policy"
    | "previous_interaction_id"
    | "enable_events"
    | "mcp_servers"
  >,
): CreateRunBody {
  const publicBaseUrl = requireSetting(ctx.config, "PUBLIC_BASE_URL").replace(/\/+$/, "");
  return {
    processor: run.processor,
    input: run.input,
    ...(run.task_spec ? { task_spec: run.task_spec as unknown as CreateRunBody["task_spec"] } : {}),
    metadata: { ...run.metadata, [RUN_ID_METADATA_KEY]: run.id },
    ...(run.source_policy ? { source_policy: run.source_policy } : {}),
    ...(run.previous_interaction_id ? { previous_interaction_id: run.previous_interaction_id } : {}),
    ...(run.enable_events != null ? { enable_events: run.enable_events } : {}),
    ...(run.mcp_servers ? { mcp_servers: run.mcp_servers as unknown as CreateRunBody["mcp_servers"] } : {}),
    webhook: { url: `${publicBaseUrl}${WEBHOOK_PATH}`, event_types: ["task_run.status"] },
  };
}

const SUBMITTING = stepGuard("submit");

/**
 * The sweeper's resubmission of a run still `submitting`. A revoked key's run is not sent to
 * Parallel again: it ends `failed` (`key_revoked`). Revoking a key stops what would spend for it;
 * what it already owes (results fetched, deliveries created) is still delivered.
 */
export async function resubmitRun(ctx: ServiceContext, run: Run): Promise<Run> {
  const key = await findKey(ctx.db, run.api_key_id);
  if (key && !key.revoked_at) return submitRun(ctx, run);
  const now = ctx.now();
  const at = now.toISOString();
  const message =
    "The run's API key was revoked before Parallel accepted the run; it was not submitted again.";
  const failed = await changeRun(
    ctx.db,
    run,
    at,
    {
      status: "failed",
      error: { code: "key_revoked", message },
      finished_at: at,
      next_sweep_at: finishDueAt(run, now),
      lease_until: null,
    },
    { kind: "submit_failed", detail: { reason: "key_revoked" } },
    SUBMITTING,
  );
  ctx.log.warn("run.key_revoked", { run_id: run.id, api_key_id: run.api_key_id });
  if (failed) await onRunFinished(ctx, failed);
  return failed ?? (await currentRun(ctx, run));
}

/**
 * Creates the stored run at Parallel and records the outcome. Called by POST /v1/runs and by the
 * sweeper for submissions that failed transiently; the guard makes a late duplicate a no-op.
 */
export async function submitRun(ctx: ServiceContext, run: Run): Promise<Run> {
  const outcome = await ctx.parallel.createRun(parallelCreateBody(ctx, run));
  const now = ctx.now();
  const at = now.toISOString();
  const attempt = run.attempts + 1;

  if (outcome.ok) {
    if (!isKnownParallelStatus(outcome.value.status)) warnUnknownStatus(ctx, run, outcome.value.status);
    // Parallel took taskrelay's credentials: an operator alert they raised is resolved (one batch;
    // deleting nothing writes nothing).
    const [updated] = await ctx.db.batch([
      ...changeRunStatements(
        ctx.db,
        run,
        at,
        acceptedChanges(ctx, run, outcome.value, now),
        { kind: "submitted", detail: { parallel_run_id: outcome.value.run_id, attempt } },
        SUBMITTING,
      ),
      resolveOperatorProblem(ctx),
    ]);
    const accepted = returnedRun(updated);
    ctx.log.info("run.submitted", {
      run_id: run.id,
      parallel_run_id: outcome.value.run_id,
      processor: run.processor,
      schedule_id: run.schedule_id,
      attempt,
    });
    return accepted ?? (await currentRun(ctx, run));
  }

  if (outcome.kind === "operator") return waitForOperator(ctx, run, outcome, now, attempt);

  if (outcome.kind === "rejected" || outcome.kind === "not_found" || outcome.kind === "still_active") {
    const message = `Parallel refused the run (HTTP ${outcome.status}): ${outcome.message}`;
    const rejected = await changeRun(
      ctx.db,
      run,
      at,
      {
        status: "rejected",
        error: { code: "parallel_rejected", message, detail: outcome.status },
        finished_at: at,
        next_sweep_at: finishDueAt(run, now),
        lease_until: null,
        attempts: attempt,
      },
      { kind: "rejected", detail: { parallel_status: outcome.status, message: outcome.message } },
      SUBMITTING,
    );
    ctx.log.warn("run.rejected", { run_id: run.id, parallel_status: outcome.status });
    if (rejected) await onRunFinished(ctx, rejected);
    return rejected ?? (await currentRun(ctx, run));
  }

  if (attempt >= ctx.config.SUBMIT_MAX_ATTEMPTS) {
    const message = `Parallel did not accept the run after ${attempt} attempts; the last error: ${outcome.message}`;
    const failed = await changeRun(
      ctx.db,
      run,
      at,
      {
        status: "failed",
        error: { code: "submit_failed", message },
        finished_at: at,
        next_sweep_at: finishDueAt(run, now),
        lease_until: null,
        attempts: attempt,
      },
      {
        kind: "submit_failed",
        detail: { attempt, parallel_status: outcome.status, message: outcome.message },
      },
      SUBMITTING,
    );
    ctx.log.error("run.submit_failed", { run_id: run.id, attempt, parallel_status: outcome.status });
    if (failed) await onRunFinished(ctx, failed);
    return failed ?? (await currentRun(ctx, run));
  }

  const next = retryAt(ctx.config, attempt, now, outcome.retryAfterMs);
  const retrying = await changeRun(
    ctx.db,
    run,
    at,
    { attempts: attempt, next_sweep_at: next.toISOString(), lease_until: null },
    {
      kind: "submit_retry_scheduled",
      detail: {
        attempt,
        parallel_status: outcome.status,
        message: outcome.message,
        next_attempt_at: next.toISOString(),
      },
    },
    SUBMITTING,
  );
  ctx.log.warn("run.submit_retry", { run_id: run.id, attempt, parallel_status: outcome.status });
  return retrying ?? (await currentRun(ctx, run));
}

/**
 * Parallel refused taskrelay's own key or account (401, 402): not the run's fault, so the run stays
 * `submitting` and is tried again with backoff until its deadline, and goes through once the
 * operator fixes the key or the credit. /healthz reports `degraded` meanwhile.
 */
async function waitForOperator(
  ctx: ServiceContext,
  run: Run,
  outcome: OperatorFailure,
  now: Date,
  attempt: number,
): Promise<Run> {
  const at = now.toISOString();
  const reason = operatorReason(outcome);
  const deadline = runDeadline(ctx.config, run);
  const alert = noteOperatorProblem(ctx, outcome, "create");

  if (at >= deadline) {
    const message = `Parallel refused taskrelay's credentials until the run's deadline (${deadline}); the last error: ${reason}`;
    const [updated] = await ctx.db.batch([
      ...changeRunStatements(
        ctx.db,
        run,
        at,
        {
          status: "failed",
          error: { code: "submit_failed", message, detail: outcome.status },
          finished_at: at,
          next_sweep_at: finishDueAt(run, now),
          lease_until: null,
          attempts: attempt,
        },
        { kind: "submit_failed", detail: { attempt, parallel_status: outcome.status, message: reason } },
        SUBMITTING,
      ),
      ...alert,
    ]);
    const failed = returnedRun(updated);
    if (failed) await onRunFinished(ctx, failed);
    return failed ?? (await currentRun(ctx, run));
  }

  const next = notAfter(retryAt(ctx.config, attempt, now), deadline);
  const [updated] = await ctx.db.batch([
    ...changeRunStatements(
      ctx.db,
      run,
      at,
      { attempts: attempt, next_sweep_at: next, lease_until: null },
      {
        kind: "submit_retry_scheduled",
        detail: { attempt, parallel_status: outcome.status, message: reason, next_attempt_at: next },
      },
      SUBMITTING,
    ),
    ...alert,
  ]);
  ctx.log.info("run.submit_waiting_for_operator", {
    run_id: run.id,
    attempt,
    parallel_status: outcome.status,
  });
  return returnedRun(updated) ?? (await currentRun(ctx, run));
}

/** The run's columns once Parallel accepted it: polling is scheduled for when a webhook is overdue. */
function acceptedChanges(ctx: ServiceContext, run: Run, taskRun: TaskRun, now: Date): RunChanges {
  return {
    parallel_run_id: taskRun.run_id,
    interaction_id: taskRun.interaction_id ?? taskRun.run_id,
    status: recordedStatus(taskRun.status, run.status),
    warnings: taskRun.warnings ?? null,
    submitted_at: now.toISOString(),
    deadline_at: deadlineAt(ctx.config, run.processor, now).toISOString(),
    attempts: 0,
    next_sweep_at: firstPollAt(ctx.config, run.processor, now).toISOString(),
    lease_until: null,
  };
}

async function currentRun(ctx: ServiceContext, run: Run): Promise<Run> {
  return (await findRun(ctx.db, run.id)) ?? run;
}

export async function getOwnedRun(ctx: ServiceContext, apiKeyId: string, id: string): Promise<Run> {
  const run = await findOwnedRun(ctx.db, apiKeyId, id);
  if (!run) throw new ApiError("not_found", `No run ${id}.`);
  return run;
}

export interface RunPage {
  /** The columns lists show: never outputs (db/runs.ts RUN_SUMMARY_COLUMNS). */
  runs: RunSummary[];
  nextCursor: string | null;
}

export async function listOwnedRuns(
  ctx: ServiceContext,
  query: PageRequest & {
    /** null: every key's runs (the admin's dashboard). */
    apiKeyId: string | null;
    status?: RunStatus | undefined;
    scheduleId?: string | undefined;
    batchId?: string | undefined;
  },
): Promise<RunPage> {
  const rows = await listRunRows(ctx.db, { ...query, beforeId: beforeIdOf(query.cursor) });
  const { items, nextCursor } = toPage(rows, query.limit);
  return { runs: items, nextCursor };
}

/** ?wait re-reads the run after 250 ms, then backs off doubling to 2 s: prompt at first, few reads later. */
const WAIT_FIRST_MS = 250;
const WAIT_MAX_MS = 2000;

/**
 * The run once its result is stored, waiting up to `waitSeconds` for it by re-reading D1 (never by holding
 * Parallel's blocking call). A run that ended without a result is a 409 that says why. The reads
 * stay inside SUBREQUEST_BUDGET (the request's earlier queries included): when the next read would
 * not fit, the wait ends early with the same 409 as a wait that ran out.
 */
export async function getRunResult(
  ctx: ServiceContext,
  apiKeyId: string,
  id: string,
  waitSeconds: number,
): Promise<{ run: Run }> {
  const deadline = Date.now() + waitSeconds * 1000;
  let interval = WAIT_FIRST_MS;
  for (;;) {
    const run = await getOwnedRun(ctx, apiKeyId, id);
    // The output itself is read by the caller (services/outputs.ts): inline, or streamed from R2.
    if (hasStoredOutput(run)) return { run };
    if (isTerminal(run.status) && run.status !== "completed") {
      throw new ApiError(
        "run_failed",
        `Run ${id} ended ${run.status} and has no result: ${run.error?.message ?? "no reason recorded"}`,
        [{ message: run.error?.message ?? "", status: run.status }],
      );
    }
    const remaining = deadline - Date.now();
    const outOfCalls = ctx.usage.d1_queries + 1 > ctx.config.SUBREQUEST_BUDGET;
    if (remaining <= 0 || outOfCalls) {
      throw new ApiError(
        "result_not_ready",
        `Run ${id} is ${run.status}; its result is not stored yet. Retry later, pass ?wait=N (up to 60 seconds), or give a callback URL.`,
        [{ message: "not ready", status: run.status }],
      );
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(interval, remaining)));
    interval = Math.min(interval * 2, WAIT_MAX_MS);
  }
}

const TIMELINE_CURSOR_PREFIX = "evt";

/** One page of a run's timeline, oldest first; the cursor continues after the page's last event. */
export async function getRunTimeline(
  ctx: ServiceContext,
  apiKeyId: string,
  id: string,
  page: PageRequest,
): Promise<{ events: RunEvent[]; nextCursor: string | null }> {
  await getOwnedRun(ctx, apiKeyId, id);
  const afterId = page.cursor ? decodeSequenceCursor(TIMELINE_CURSOR_PREFIX, page.cursor) : 0;
  const rows = await listRunEvents(ctx.db, id, { afterId, limit: page.limit });
  const { items, nextCursor } = toSequencePage(rows, page.limit, TIMELINE_CURSOR_PREFIX);
  return { events: items.map(({ at, kind, detail }) => ({ at, kind, detail })), nextCursor };
}
