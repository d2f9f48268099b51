// Runs: create (store first, then submit to Parallel), read, list, and wait for a result.
import { canonicalJson } from "../canonical-json";
import { findKey } from "../db/keys";
import { listRunEvents, type RunEvent, type RunEventKind, runEvent } from "../db/run-events";
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
import { recordAcceptedSpend, releaseRefusedRunSpend, releaseSpend } from "../db/spend";
import { requireSetting } from "../env";
import { ApiError, validationFailed } from "../errors";
import { newId, sha256Hex } from "../ids";
import type { Admission } from "../limiter";
import type { CreateRunBody, TaskRun } from "../parallel/client";
import { RUN_ID_METADATA_KEY, runWarnings } from "../parallel/task-spec-checks";
import { microToUsd } from "../pricing/prices";
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
import { type BudgetView, budgetCheck, reserveRunSpend, runCostMicro } from "./spend";
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

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export interface CreateRunInput {
  apiKeyId: string;
  request: RunRequest;
  idempotencyKey?: string | undefined;
  scheduleId?: string | undefined;
  /**
   * Whether the key has a monthly budget, as its row read (auth, the schedule's firing): false skips
   * the reservation's queries. Undefined: the reservation finds out.
   */
  keyHasBudget?: boolean | undefined;
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

  // The cost is reserved against the key's budget before anything is stored or paid: 402 if it
  // would pass it. Released if Parallel never accepts the run.
  const cost = runCostMicro(ctx, input.request.processor);
  const spendMonth = input.keyHasBudget === false ? null : await reserveRunSpend(ctx, input.apiKeyId, cost);
  const now = ctx.now();
  const run = newRun(input, requestHash, now, cost, spendMonth);
  // The limiter is asked while the run is stored, so its answer adds no wait of its own in the
  // common case (it never throws: src/limiter/index.ts). A lost idempotency race wastes one slot.
  const startedMs = Date.now();
  const admitted = ctx.acquireCreates(run.api_key_id, 1).then((admission) => ({
    admission,
    limiterMs: Date.now() - startedMs,
  }));
  try {
    // The run and its `stored` event: one row.
    await insertRun(ctx.db, run, [runEvent(run.created_at, "stored")]).run();
  } catch (error) {
    // Nothing was stored: give the reservation back (if this worker dies first, the month
    // over-counts the run's cost, which never lets the key overspend).
    if (spendMonth) await releaseSpend(ctx.db, input.apiKeyId, cost, spendMonth).run();
    // Two requests with the same Idempotency-Key at once: the loser answers with the winner's run.
    if (input.idempotencyKey && String(error).includes("UNIQUE")) {
      const winner = await findRunByIdempotencyKey(ctx.db, input.apiKeyId, input.idempotencyKey);
      if (winner) return replay(winner, requestHash);
    }
    throw error;
  }
  const storedMs = Date.now() - startedMs;
  const { admission, limiterMs } = await admitted;
  const timing = {
    limiter_ms: limiterMs,
    limiter_added_ms: Math.max(0, limiterMs - storedMs),
    limiter_wait_ms: admission.granted ? admission.waitMs : 0,
  };
  if (admission.granted && admission.waitMs > 0) {
    // A slot in a moment: answer now (the run is `submitting`, 202) and create it when the slot comes.
    ctx.waitUntil(sleep(admission.waitMs).then(() => createAtParallel(ctx, run, timing)));
    return { run, replayed: false };
  }
  const submitted = await submitRun(ctx, run, admission, timing);
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

/**
 * `callback: null` means no callback, as an absent one does: the same request for an Idempotency-Key.
 * `dry_run` is how the request was sent, not what it asks for.
 */
function hashedRequest(request: RunRequest): RunRequest {
  const { dry_run: _dry, ...asked } = request;
  if (asked.callback !== null) return asked;
  const { callback: _none, ...rest } = asked;
  return rest;
}

export interface DryRunCheck {
  check: "request" | "idempotency" | "previous_interaction_id" | "budget";
  passed: boolean;
  message: string;
}

export interface DryRunResult {
  dry_run: true;
  /** Whether POST /v1/runs without dry_run would submit a new run now. */
  would_submit: boolean;
  processor: string;
  cost_usd: number;
  checks: DryRunCheck[];
  budget: BudgetView;
}

/**
 * The dry runs' idempotency and previous_interaction_id checks (POST /v1/runs and POST /v1/batches),
 * appended to `checks`. `earlier` is what the Idempotency-Key names (undefined: no key was sent).
 */
export async function replayAndInteractionChecks(
  ctx: ServiceContext,
  checks: DryRunCheck[],
  options: {
    apiKeyId: string;
    noun: "run" | "batch";
    earlier: { id: string; request_hash: string | null } | null | undefined;
    requestHash: () => Promise<string>;
    previousInteractionId: string | null | undefined;
  },
): Promise<{ replays: boolean }> {
  const { earlier, noun } = options;
  let replays = false;
  if (earlier) {
    replays = earlier.request_hash === (await options.requestHash());
    checks.push({
      check: "idempotency",
      passed: replays,
      message: replays
        ? `replays ${noun} ${earlier.id}: no new ${noun} would be made`
        : `this Idempotency-Key was used with a different request (${noun} ${earlier.id}): 409`,
    });
  } else if (earlier === null) {
    checks.push({ check: "idempotency", passed: true, message: "a new Idempotency-Key" });
  }
  const previous = options.previousInteractionId;
  if (previous) {
    const owned = await ownsInteraction(ctx.db, options.apiKeyId, previous);
    checks.push({
      check: "previous_interaction_id",
      passed: owned,
      message: owned
        ? "the interaction of one of your runs"
        : "not the interaction id of one of your runs: 404",
    });
  }
  return { replays };
}

/**
 * What POST /v1/runs would do, without storing, reserving or submitting anything: the checks (a
 * request that fails them is the same 422 as without dry_run) and the run's cost.
 */
export async function dryRunCreate(ctx: ServiceContext, input: CreateRunInput): Promise<DryRunResult> {
  const problems = checkRunRequest(input.request, ctx.config);
  if (problems.length > 0) throw validationFailed(problems);
  requireSetting(ctx.config, "PARALLEL_API_KEY");
  requireSetting(ctx.config, "PUBLIC_BASE_URL");
  const checks: DryRunCheck[] = [
    { check: "request", passed: true, message: "passes Parallel's limits and taskrelay's checks" },
  ];
  const { replays } = await replayAndInteractionChecks(ctx, checks, {
    apiKeyId: input.apiKeyId,
    noun: "run",
    earlier: input.idempotencyKey
      ? await findRunByIdempotencyKey(ctx.db, input.apiKeyId, input.idempotencyKey)
      : undefined,
    requestHash: () => sha256Hex(canonicalJson(hashedRequest(input.request))),
    previousInteractionId: input.request.previous_interaction_id,
  });
  const cost = runCostMicro(ctx, input.request.processor);
  const { budget, check } = await budgetCheck(ctx, input.apiKeyId, cost);
  checks.push(check);
  return {
    dry_run: true,
    would_submit: !replays && checks.every((c) => c.passed),
    processor: input.request.processor,
    cost_usd: microToUsd(cost),
    checks,
    budget,
  };
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

function newRun(
  input: CreateRunInput,
  requestHash: string | null,
  now: Date,
  costMicroUsd: number,
  spendMonth: string | null,
): Run {
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
    cost_micro_usd: costMicroUsd,
    spend_month: spendMonth,
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
  if (key && !key.revoked_at) return submitRun(ctx, run, await patientAdmission(ctx, run.api_key_id));
  const now = ctx.now();
  const at = now.toISOString();
  const message =
    "The run's API key was revoked before Parallel accepted the run; it was not submitted again.";
  const failed = await changeUnacceptedRun(
    ctx,
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
  );
  ctx.log.warn("run.key_revoked", { run_id: run.id, api_key_id: run.api_key_id });
  if (failed) await onRunFinished(ctx, failed);
  return failed ?? (await currentRun(ctx, run));
}

/**
 * Creates the stored run at Parallel once the create limiter (src/limiter/) gives it a slot, and
 * records the outcome. Called by POST /v1/runs (with the limiter's answer, asked while the run was
 * stored) and by the sweeper for submissions that failed transiently or were deferred; the guard
 * makes a late duplicate a no-op. No slot: the run stays `submitting`, due when the limiter says.
 */
export async function submitRun(
  ctx: ServiceContext,
  run: Run,
  admitted?: Admission,
  timing: Record<string, number> = {},
): Promise<Run> {
  const admission = admitted ?? (await ctx.acquireCreates(run.api_key_id, 1));
  if (!admission.granted) return deferSubmission(ctx, run, admission.retryInMs);
  if (admission.waitMs > 0) await sleep(admission.waitMs);
  return createAtParallel(ctx, run, timing);
}

/** How long the sweeper's resubmission waits in its invocation for a slot, asking the limiter again. */
export const RESUBMIT_PATIENCE_MS = 10_000;
/** The limiter asked at most this often per resubmission (cron/costs.ts reserves them). */
export const RESUBMIT_MAX_ASKS = 3;

/**
 * The limiter's answer for a resubmission: refused with a time to ask again that falls within
 * RESUBMIT_PATIENCE_MS, it waits and asks again (up to RESUBMIT_MAX_ASKS asks). The cron tick hands
 * out due runs once a minute, all at once; the limiter spreads their times to ask again over the
 * key's share of the rate, so waiting here sends them at those times rather than at the next tick.
 * Within the run's lease (30 s): 10 s of waiting, then a create of at most 15 s.
 */
async function patientAdmission(ctx: ServiceContext, keyId: string): Promise<Admission> {
  const patientUntil = Date.now() + RESUBMIT_PATIENCE_MS;
  let admission = await ctx.acquireCreates(keyId, 1);
  for (let asked = 1; asked < RESUBMIT_MAX_ASKS && !admission.granted; asked++) {
    if (Date.now() + admission.retryInMs > patientUntil) break;
    await sleep(admission.retryInMs);
    admission = await ctx.acquireCreates(keyId, 1);
  }
  return admission;
}

/**
 * Over the create limit: the run stays `submitting`, due for the sweeper's resubmit_runs when the
 * limiter said to ask again. Not an attempt (SUBMIT_MAX_ATTEMPTS counts Parallel's failures); past
 * the run's deadline it fails, so every run still ends by its deadline.
 */
async function deferSubmission(ctx: ServiceContext, run: Run, retryInMs: number): Promise<Run> {
  const now = ctx.now();
  const at = now.toISOString();
  const deadline = runDeadline(ctx.config, run);
  if (at >= deadline) {
    const message = `The run waited for taskrelay's create limit (PARALLEL_CREATE_LIMIT_PER_MINUTE) until its deadline (${deadline}).`;
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
      },
      { kind: "submit_failed", detail: { reason: "create_limit", message } },
      SUBMITTING,
    );
    ctx.log.error("run.submit_failed", { run_id: run.id, reason: "create_limit" });
    if (failed) await onRunFinished(ctx, failed);
    return failed ?? (await currentRun(ctx, run));
  }
  const next = notAfter(addMs(now, retryInMs), deadline);
  const deferred = await changeRun(
    ctx.db,
    run,
    at,
    { next_sweep_at: next, lease_until: null },
    { kind: "submit_retry_scheduled", detail: { reason: "create_limit", next_attempt_at: next } },
    SUBMITTING,
  );
  ctx.log.info("run.submit_deferred", { run_id: run.id, api_key_id: run.api_key_id, next_attempt_at: next });
  return deferred ?? (await currentRun(ctx, run));
}

/** The create at Parallel, its slot granted, and its outcome recorded. */
async function createAtParallel(ctx: ServiceContext, run: Run, timing: Record<string, number>): Promise<Run> {
  const sentMs = Date.now();
  const outcome = await ctx.parallel.createRun(parallelCreateBody(ctx, run));
  const now = ctx.now();
  const createdMs = Date.parse(run.created_at);
  const at = now.toISOString();
  const attempt = run.attempts + 1;

  if (outcome.ok) {
    if (!isKnownParallelStatus(outcome.value.status)) warnUnknownStatus(ctx, run, outcome.value.status);
    // Parallel took taskrelay's credentials: an operator alert they raised is resolved (one batch;
    // deleting nothing writes nothing).
    // The run's cost enters the usage rollup in the same batch (checked before the change: see
    // recordAcceptedSpend).
    const [, updated] = await ctx.db.batch([
      recordAcceptedSpend(ctx.db, run.id, at, SUBMITTING),
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
      ...timing,
      // Where a create's time goes, from the run's row (ms after created_at): sent to Parallel,
      // made there (Parallel's created_at), answered (submitted_at), the row updated.
      sent_after_ms: sentMs - createdMs,
      parallel_created_after_ms: Date.parse(outcome.value.created_at ?? "") - createdMs,
      answered_after_ms: now.getTime() - createdMs,
      updated_after_ms: Date.now() - createdMs,
    });
    return accepted ?? (await currentRun(ctx, run));
  }

  if (outcome.kind === "operator") return waitForOperator(ctx, run, outcome, now, attempt);

  if (outcome.kind === "rejected" || outcome.kind === "not_found" || outcome.kind === "still_active") {
    const message = `Parallel refused the run (HTTP ${outcome.status}): ${outcome.message}`;
    const rejected = await changeUnacceptedRun(
      ctx,
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
    );
    ctx.log.warn("run.rejected", { run_id: run.id, parallel_status: outcome.status });
    if (rejected) await onRunFinished(ctx, rejected);
    return rejected ?? (await currentRun(ctx, run));
  }

  if (attempt >= ctx.config.SUBMIT_MAX_ATTEMPTS) {
    const message = `Parallel did not accept the run after ${attempt} attempts; the last error: ${outcome.message}`;
    const failed = await changeUnacceptedRun(
      ctx,
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
    // Never accepted: its reservation is given back (before the change; see releaseRefusedRunSpend).
    const release = releaseRefusedRunSpend(ctx.db, run, SUBMITTING);
    const results = await ctx.db.batch([
      ...release,
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
    const failed = returnedRun(results[release.length]);
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

/**
 * Ends a run Parallel never accepted (refused, given up, key revoked): the change and, in the same
 * batch, its budget reservation given back.
 */
async function changeUnacceptedRun(
  ctx: ServiceContext,
  run: Run,
  at: string,
  changes: RunChanges,
  event: { kind: RunEventKind; detail?: Record<string, unknown> | null },
): Promise<Run | null> {
  const release = releaseRefusedRunSpend(ctx.db, run, SUBMITTING);
  const results = await ctx.db.batch([
    ...release,
    ...changeRunStatements(ctx.db, run, at, changes, event, SUBMITTING),
  ]);
  return returnedRun(results[release.length]);
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
