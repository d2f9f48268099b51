// Batches: one template, many inputs, each input an ordinary run (issue 15). Create, add inputs,
// close, cancel, read, list. Every input is checked as POST /v1/runs checks a run before anything is
// stored; the runs are stored in a few multi-row statements of one D1 batch, and their submission to
// Parallel is the submit_batches job's (services/batch-submission.ts), started by a queue message.
import { canonicalJson } from "../canonical-json";
import {
  addBatchInputsStatement,
  type Batch,
  type BatchRunRow,
  type BatchRunShared,
  type BatchStatus,
  closeBatchStatement,
  endUnsubmittedRunsStatements,
  findBatch,
  findBatchByIdempotencyKey,
  insertBatch,
  insertBatchRuns,
  listBatches as listBatchRows,
  returnedBatch,
  updateBatchStatement,
} from "../db/batches";
import { ownsInteraction } from "../db/runs";
import { releaseSpend, reserveSpend } from "../db/spend";
import { requireSetting } from "../env";
import { ApiError, type ErrorDetail, validationFailed } from "../errors";
import { newId, sha256Hex } from "../ids";
import { findProcessor } from "../parallel/processors";
import { checkInputAgainstSpec, checkMetadata, runWarnings } from "../parallel/task-spec-checks";
import { microToUsd } from "../pricing/prices";
import { BatchInputSchema, type BatchRequest, type BatchView, MAX_BATCH_INPUTS } from "../schemas/batches";
import { issuesToDetails } from "../schemas/issues";
import type { ServiceContext } from "./context";
import { beforeIdOf, type PageRequest, toPage } from "./pages";
import { checkCallback, checkRunRequest } from "./run-request";
import { replayAndInteractionChecks } from "./runs";
import { type BudgetView, budgetCheck, budgetExceeded, runCostMicro } from "./spend";
import { addMs, LEASE_MS } from "./timing";

/** The queue job that submits batches (cron/jobs/submit-batches.ts); its messages name a batch. */
export const SUBMIT_BATCHES_JOB = "submit_batches";

/** Where a new batch's first message goes; absent (a test, a missing binding): the cron tick finds it. */
export type BatchQueue = Pick<Queue<{ kind: string; id: string; lease: string }>, "send"> | undefined;

const fieldsOf = (value: unknown): Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};

export interface RefusedInput {
  index: number;
  details: ErrorDetail[];
}

interface AcceptedInput {
  index: number;
  input: string | Record<string, unknown>;
  metadata: Record<string, string | number | boolean> | undefined;
}

/**
 * The template's problems (and the batch-level fields'), as POST /v1/runs would find them in a run
 * request without an input. Takes any JSON value, like every body check.
 */
export function checkBatchTemplate(body: unknown, ctx: Pick<ServiceContext, "config">): ErrorDetail[] {
  const fields = fieldsOf(body);
  const template = fieldsOf(fields.template);
  // No input yet: the spec's own limits are checked here, each input's under the spec one by one.
  const { input: _input, ...withoutInput } = template;
  return [
    ...checkRunRequest(withoutInput, ctx.config, "template.").filter((p) => p.path !== "template.input"),
    ...checkCallback(fields.callback, ctx.config, "callback"),
  ];
}

/**
 * Each input checked as POST /v1/runs checks a run's input and metadata: its shape, its length with
 * the template's spec, against the spec's input schema, and its metadata merged with the template's.
 * `specOk` is false when the template's spec has problems of its own (then the input is only
 * checked for its shape and metadata).
 */
export function checkBatchInputs(
  inputs: readonly unknown[],
  template: unknown,
  specOk: boolean,
): { accepted: AcceptedInput[]; refused: RefusedInput[] } {
  const taskSpec = fieldsOf(template).task_spec;
  const templateMetadata = fieldsOf(fieldsOf(template).metadata);
  const accepted: AcceptedInput[] = [];
  const refused: RefusedInput[] = [];
  inputs.forEach((item, index) => {
    const path = `inputs.${index}`;
    const parsed = BatchInputSchema.safeParse(item);
    const details = parsed.success ? [] : issuesToDetails(parsed.error.issues, ["inputs", index]);
    const fields = fieldsOf(item);
    if (specOk && "input" in fields)
      details.push(...checkInputAgainstSpec(taskSpec, fields.input, `${path}.input`));
    details.push(...checkMetadata(fields.metadata, `${path}.metadata`));
    const unique = details.filter(
      (d, i) => details.findIndex((e) => e.path === d.path && e.message === d.message) === i,
    );
    if (unique.length > 0 || !parsed.success) {
      refused.push({ index, details: unique });
      return;
    }
    const metadata = { ...templateMetadata, ...parsed.data.metadata } as AcceptedInput["metadata"];
    accepted.push({
      index,
      input: parsed.data.input,
      metadata: Object.keys(metadata ?? {}).length > 0 ? metadata : undefined,
    });
  });
  return { accepted, refused };
}

/** Every problem of a batch request for the route's 422 when its shape failed too: template, then inputs. */
export function checkBatchRequestBody(body: unknown, ctx: Pick<ServiceContext, "config">): ErrorDetail[] {
  const problems = checkBatchTemplate(body, ctx);
  const inputs = fieldsOf(body).inputs;
  if (!Array.isArray(inputs)) return problems;
  const specOk = !problems.some((p) => p.path?.startsWith("template.task_spec"));
  return [...problems, ...refusedDetails(checkBatchInputs(inputs, fieldsOf(body).template, specOk).refused)];
}

/** The refused inputs as one 422's details, each with its index. */
function refusedDetails(refused: RefusedInput[]): ErrorDetail[] {
  return refused.flatMap((r) => r.details.map((d) => ({ ...d, index: r.index })));
}

export interface BatchResult {
  batch: BatchView;
  replayed: boolean;
}

type CreateBatchInput = {
  apiKeyId: string;
  request: BatchRequest;
  idempotencyKey?: string | undefined;
  queue: BatchQueue;
};

/** The checks every POST /v1/batches passes before anything is stored: the accepted and refused inputs. */
function checkedInputs(ctx: ServiceContext, request: BatchRequest) {
  // The template's problems with every input's: one answer lists them all.
  if (checkBatchTemplate(request, ctx).length > 0)
    throw validationFailed(checkBatchRequestBody(request, ctx));
  const inputs = request.inputs ?? [];
  if (inputs.length === 0 && !request.open) {
    throw validationFailed([
      {
        path: "inputs",
        message: 'inputs is empty; give at least one input, or "open": true to add them later',
      },
    ]);
  }
  const { accepted, refused } = checkBatchInputs(inputs, request.template, true);
  refuseUnlessSkipped(refused, accepted, request.skip_invalid === true);
  requireSetting(ctx.config, "PARALLEL_API_KEY");
  requireSetting(ctx.config, "PUBLIC_BASE_URL");
  return { accepted, refused };
}

/** `dry_run` is how the request was sent, not what it asks for: not part of the Idempotency-Key's body. */
function hashedBatchRequest(request: BatchRequest): BatchRequest {
  const { dry_run: _dry, ...asked } = request;
  return asked;
}

export interface BatchDryRunResult {
  dry_run: true;
  /** Whether the same request without dry_run would store and submit a new batch now. */
  would_submit: boolean;
  processor: string;
  /** The inputs that would be stored and submitted (with skip_invalid, those that pass). */
  inputs: number;
  cost_usd: number;
  checks: Array<{
    check: "request" | "idempotency" | "previous_interaction_id" | "budget";
    passed: boolean;
    message: string;
  }>;
  budget: BudgetView;
  refused?: RefusedInput[];
}

/**
 * What POST /v1/batches would do, without storing, reserving or submitting anything: the checks (a
 * request that fails them is the same 422 as without dry_run), the inputs it would submit, their cost.
 */
export async function dryRunBatch(ctx: ServiceContext, input: CreateBatchInput): Promise<BatchDryRunResult> {
  const { request } = input;
  const { accepted, refused } = checkedInputs(ctx, request);
  const checks: BatchDryRunResult["checks"] = [
    { check: "request", passed: true, message: "the template and every submitted input pass the checks" },
  ];
  const { replays } = await replayAndInteractionChecks(ctx, checks, {
    apiKeyId: input.apiKeyId,
    noun: "batch",
    earlier: input.idempotencyKey
      ? await findBatchByIdempotencyKey(ctx.db, input.apiKeyId, input.idempotencyKey)
      : undefined,
    requestHash: () => sha256Hex(canonicalJson(hashedBatchRequest(request))),
    previousInteractionId: request.template.previous_interaction_id as string | null | undefined,
  });
  const processor = String(request.template.processor);
  const cost = runCostMicro(ctx, processor) * accepted.length;
  const { budget, check } = await budgetCheck(ctx, input.apiKeyId, cost);
  checks.push(check);
  return {
    dry_run: true,
    would_submit: !replays && checks.every((c) => c.passed),
    processor,
    inputs: accepted.length,
    cost_usd: microToUsd(cost),
    checks,
    budget,
    ...withRefused(request, refused),
  };
}

/**
 * The whole request's cost reserved against the key's budget with one guarded UPDATE (db/spend.ts),
 * before anything is stored: refused whole with 402 if it does not fit. The month reserved against
 * (null: no budget, nothing reserved) and the cost, for the rows and for a release.
 */
async function reserveBatchSpend(
  ctx: ServiceContext,
  apiKeyId: string,
  processor: string,
  count: number,
): Promise<{ price: number; cost: number; month: string | null }> {
  const price = runCostMicro(ctx, processor);
  const cost = price * count;
  if (cost === 0) return { price, cost, month: null };
  const now = ctx.now();
  const reservation = await reserveSpend(ctx.db, apiKeyId, cost, now);
  if (!reservation.ok) throw budgetExceeded(reservation, cost, now, "This batch");
  return { price, cost, month: reservation.month };
}

/** Gives a reservation back when nothing was stored (a lost race, a failed write). */
async function releaseBatchSpend(
  ctx: ServiceContext,
  apiKeyId: string,
  spend: { cost: number; month: string | null },
) {
  if (!spend.month || spend.cost === 0) return;
  await releaseSpend(ctx.db, apiKeyId, spend.cost, spend.month).run();
}

export async function createBatch(ctx: ServiceContext, input: CreateBatchInput): Promise<BatchResult> {
  const { request } = input;
  const { accepted, refused } = checkedInputs(ctx, request);

  const requestHash = input.idempotencyKey
    ? await sha256Hex(canonicalJson(hashedBatchRequest(request)))
    : null;
  if (input.idempotencyKey) {
    const earlier = await findBatchByIdempotencyKey(ctx.db, input.apiKeyId, input.idempotencyKey);
    if (earlier) return replay(ctx, earlier, requestHash, refused);
  }
  const previous = request.template.previous_interaction_id;
  if (previous && !(await ownsInteraction(ctx.db, input.apiKeyId, previous))) {
    throw new ApiError("not_found", `No run of yours has the interaction id ${previous}.`, [
      { path: "template.previous_interaction_id", message: "not the interaction id of one of your runs" },
    ]);
  }

  const now = ctx.now();
  const at = now.toISOString();
  const batch: Batch = {
    id: newId("bat", now),
    api_key_id: input.apiKeyId,
    name: request.name ?? null,
    status: request.open ? "open" : "submitting",
    template: request.template as Record<string, unknown>,
    callback_url: request.callback?.url ?? null,
    callback_per_run: request.callback?.per_run === true,
    taskgroup_id: null,
    input_count: accepted.length,
    status_counts: accepted.length > 0 ? { submitting: accepted.length } : {},
    results_event_id: null,
    idempotency_key: input.idempotencyKey ?? null,
    request_hash: requestHash,
    created_at: at,
    updated_at: at,
    closed_at: request.open ? null : at,
    cancelled_at: null,
    completed_at: null,
    next_sweep_at: accepted.length > 0 ? at : null,
    lease_until: null,
  };
  const rows = runRows(accepted, 0, now);
  const spend = await reserveBatchSpend(ctx, input.apiKeyId, String(request.template.processor), rows.length);
  try {
    await ctx.db.batch([
      insertBatch(ctx.db, batch),
      ...insertBatchRuns(ctx.db, sharedColumns(batch, at, spend), rows),
    ]);
  } catch (error) {
    await releaseBatchSpend(ctx, input.apiKeyId, spend);
    // Two requests with one Idempotency-Key at once: the loser answers with the winner's batch.
    if (input.idempotencyKey && String(error).includes("UNIQUE")) {
      const winner = await findBatchByIdempotencyKey(ctx.db, input.apiKeyId, input.idempotencyKey);
      if (winner) return replay(ctx, winner, requestHash, refused);
    }
    throw error;
  }
  ctx.log.info("batch.created", { batch_id: batch.id, inputs: rows.length, refused: refused.length });
  if (rows.length > 0) await startSubmission(ctx, batch.id, input.queue);
  const counts = emptyCounts();
  counts.total = rows.length;
  counts.submitting = rows.length;
  return { batch: { ...toBatchView(ctx, batch, counts), ...withRefused(request, refused) }, replayed: false };
}

function refuseUnlessSkipped(refused: RefusedInput[], accepted: AcceptedInput[], skipInvalid: boolean) {
  if (refused.length === 0) return;
  if (skipInvalid && accepted.length > 0) return;
  const message = skipInvalid
    ? `Every one of the ${refused.length} inputs was refused; nothing was stored.`
    : `${refused.length} of ${refused.length + accepted.length} inputs were refused; nothing was stored (pass "skip_invalid": true to submit the others).`;
  const error = validationFailed(refusedDetails(refused));
  throw new ApiError("validation_failed", `${message} ${error.message}`, error.details);
}

const withRefused = (request: { skip_invalid?: boolean | undefined }, refused: RefusedInput[]) =>
  request.skip_invalid ? { refused } : {};

async function replay(
  ctx: ServiceContext,
  earlier: Batch,
  requestHash: string | null,
  refused: RefusedInput[],
): Promise<BatchResult> {
  if (earlier.request_hash !== requestHash) {
    throw new ApiError(
      "idempotency_conflict",
      "This Idempotency-Key was already used with a different request body; use a new key for a new batch.",
      [{ message: "request body differs from the first use of this key", batch_id: earlier.id }],
    );
  }
  // The same body refuses the same inputs: recomputed, not stored.
  const view = batchView(ctx, earlier);
  return { batch: { ...view, ...(refused.length > 0 ? { refused } : {}) }, replayed: true };
}

function runRows(accepted: AcceptedInput[], firstIndex: number, now: Date): BatchRunRow[] {
  return accepted.map((a, i) => ({
    id: newId("run", now),
    index: firstIndex + i,
    input: JSON.stringify(a.input),
    metadata: a.metadata ? JSON.stringify(a.metadata) : null,
  }));
}

/** The run columns every input of the batch shares, from its template. */
function sharedColumns(
  batch: Batch,
  at: string,
  spend: { price: number; month: string | null },
): BatchRunShared {
  const t = batch.template;
  const json = (value: unknown) => (value == null ? null : JSON.stringify(value));
  const warnings = runWarnings(t);
  return {
    apiKeyId: batch.api_key_id,
    batchId: batch.id,
    processor: String(t.processor),
    taskSpec: json(t.task_spec),
    sourcePolicy: json(t.source_policy),
    previousInteractionId: (t.previous_interaction_id as string | undefined) ?? null,
    enableEvents: t.enable_events == null ? null : t.enable_events ? 1 : 0,
    mcpServers: json(t.mcp_servers),
    // Each run's own callback only when the batch asked for them (callback.per_run).
    callbackUrl: batch.callback_per_run ? batch.callback_url : null,
    relayWarnings: warnings.length > 0 ? JSON.stringify(warnings) : null,
    costMicroUsd: spend.price,
    spendMonth: spend.month,
    at,
  };
}

/**
 * Hands the batch to the submission job now, rather than at the next cron tick: a message that takes
 * the batch if it is free (lease ""). A failed send loses nothing: the batch is due, the tick sends it.
 */
async function startSubmission(ctx: ServiceContext, batchId: string, queue: BatchQueue) {
  if (!queue) return;
  try {
    await queue.send({ kind: SUBMIT_BATCHES_JOB, id: batchId, lease: "" });
  } catch (error) {
    ctx.log.warn("batch.start_failed", { batch_id: batchId, error: String(error) });
  }
}

export async function getOwnedBatch(ctx: ServiceContext, apiKeyId: string, id: string): Promise<Batch> {
  const batch = await findBatch(ctx.db, id, apiKeyId);
  if (!batch) throw new ApiError("not_found", `No batch ${id}.`);
  return batch;
}

/** POST /v1/batches/:id/inputs: more inputs for an open batch, numbered on from its last. */
export async function addBatchInputs(
  ctx: ServiceContext,
  input: {
    apiKeyId: string;
    id: string;
    inputs: unknown[];
    skipInvalid: boolean;
    queue: BatchQueue;
  },
): Promise<BatchView> {
  const batch = await getOwnedBatch(ctx, input.apiKeyId, input.id);
  if (batch.status !== "open") {
    throw new ApiError(
      "invalid_state",
      `Batch ${batch.id} is ${batch.status}; inputs can only be added while it is open.`,
      [{ message: "not open", status: batch.status }],
    );
  }
  const { accepted, refused } = checkBatchInputs(input.inputs, batch.template, true);
  refuseUnlessSkipped(refused, accepted, input.skipInvalid);
  if (batch.input_count + accepted.length > MAX_BATCH_INPUTS) {
    throw validationFailed([
      {
        path: "inputs",
        message: `a batch takes at most ${MAX_BATCH_INPUTS.toLocaleString("en")} inputs; it has ${batch.input_count} and this request adds ${accepted.length}`,
      },
    ]);
  }
  const now = ctx.now();
  const at = now.toISOString();
  const rows = runRows(accepted, batch.input_count, now);
  const spend = await reserveBatchSpend(ctx, input.apiKeyId, String(batch.template.processor), rows.length);
  // The inserts only happen while the batch is still open with the count they were numbered from, and
  // the count moves in the same transaction: a concurrent add or a close makes this one do nothing.
  let results: D1Result[];
  try {
    results = await ctx.db.batch([
      ...insertBatchRuns(ctx.db, sharedColumns(batch, at, spend), rows, batch.input_count),
      addBatchInputsStatement(ctx.db, batch, rows.length, at),
    ]);
  } catch (error) {
    await releaseBatchSpend(ctx, input.apiKeyId, spend);
    throw error;
  }
  const updated = returnedBatch(results.at(-1));
  if (!updated) {
    await releaseBatchSpend(ctx, input.apiKeyId, spend);
    throw new ApiError(
      "invalid_state",
      `Batch ${batch.id} changed while the inputs were added (closed, cancelled, or another add); nothing was added. Read it and retry.`,
      [{ message: "changed meanwhile" }],
    );
  }
  if (rows.length > 0) await startSubmission(ctx, batch.id, input.queue);
  return { ...batchView(ctx, updated), ...withRefused({ skip_invalid: input.skipInvalid }, refused) };
}

/** POST /v1/batches/:id/close: no more inputs. Closing a closed batch answers it as it is. */
export async function closeBatch(ctx: ServiceContext, apiKeyId: string, id: string): Promise<BatchView> {
  const batch = await getOwnedBatch(ctx, apiKeyId, id);
  if (batch.status !== "open") {
    if (batch.status === "cancelled") {
      throw new ApiError("invalid_state", `Batch ${batch.id} is cancelled.`, [{ message: "cancelled" }]);
    }
    return batchView(ctx, batch);
  }
  const at = ctx.now().toISOString();
  const closed = returnedBatch((await ctx.db.batch([closeBatchStatement(ctx.db, batch.id, at)]))[0]);
  return batchView(ctx, closed ?? (await getOwnedBatch(ctx, apiKeyId, id)));
}

/**
 * POST /v1/batches/:id/cancel: nothing more is sent to Parallel. Inputs not yet sent end `cancelled`;
 * runs already at Parallel finish there and are kept. A chunk whose add-runs call is in flight is
 * left to the submission job, which records what Parallel made of it.
 */
export async function cancelBatch(ctx: ServiceContext, apiKeyId: string, id: string): Promise<BatchView> {
  const batch = await getOwnedBatch(ctx, apiKeyId, id);
  if (batch.status === "cancelled" || batch.status === "completed") return batchView(ctx, batch);
  const now = ctx.now();
  const at = now.toISOString();
  await ctx.db.batch([
    ...endUnsubmittedRunsStatements(
      ctx.db,
      batch.id,
      { from: "unsent", end: null },
      {
        status: "cancelled",
        error: {
          code: "batch_cancelled",
          message: "The batch was cancelled before this input was sent to Parallel.",
        },
      },
      { kind: "status_changed", detail: { source: "batch_cancel", from: "submitting", to: "cancelled" } },
      at,
      addMs(now, LEASE_MS).toISOString(),
    ),
    updateBatchStatement(
      ctx.db,
      batch.id,
      { status: "cancelled", cancelled_at: at, updated_at: at, next_sweep_at: at },
      { sql: "status IN ('open', 'submitting', 'running')" },
    ),
    ctx.db.prepare("UPDATE batches SET closed_at = COALESCE(closed_at, ?) WHERE id = ?").bind(at, batch.id),
  ]);
  ctx.log.info("batch.cancelled", { batch_id: batch.id });
  return batchView(ctx, await getOwnedBatch(ctx, apiKeyId, id));
}

const COUNTED = [
  "submitting",
  "queued",
  "running",
  "completed",
  "failed",
  "cancelled",
  "rejected",
  "expired",
] as const;

type Counts = BatchView["counts"];

function emptyCounts(): Counts {
  return {
    total: 0,
    submitting: 0,
    queued: 0,
    running: 0,
    completed: 0,
    failed: 0,
    cancelled: 0,
    rejected: 0,
    expired: 0,
    other: 0,
  };
}

export function toCounts(byStatus: Record<string, number>): Counts {
  const counts = emptyCounts();
  for (const [status, n] of Object.entries(byStatus)) {
    counts.total += n;
    if ((COUNTED as readonly string[]).includes(status)) counts[status as (typeof COUNTED)[number]] += n;
    else counts.other += n;
  }
  return counts;
}

/** Runs not finished: sent or to be sent, and at Parallel. */
export const unfinished = (c: Counts) => c.submitting + c.queued + c.running + c.other;

/** The batch as the API shows it: its counts come with its row (no read of its runs). */
export function batchView(ctx: ServiceContext, batch: Batch): BatchView {
  return toBatchView(ctx, batch, toCounts(batch.status_counts));
}

/**
 * The ETA is an upper bound from the processor's latency (parallel/processors.ts): its maximum after
 * the last chunk reached Parallel, or after now while inputs are still to be sent.
 */
export function toBatchView(ctx: ServiceContext, batch: Batch, counts: Counts): BatchView {
  const processor = String(batch.template.processor);
  const maxLatencyMs = findProcessor(processor)?.maxLatencyMs ?? 25 * 60_000;
  const stillSending = counts.submitting > 0 || batch.chunk_end != null;
  const from = stillSending || !batch.last_chunk_at ? ctx.now() : new Date(batch.last_chunk_at);
  const eta =
    unfinished(counts) > 0 && batch.status !== "cancelled"
      ? addMs(from, maxLatencyMs * ctx.config.TIME_SCALE).toISOString()
      : null;
  return {
    id: batch.id,
    name: batch.name,
    status: batch.status,
    processor,
    counts,
    callback: batch.callback_url ? { url: batch.callback_url, per_run: batch.callback_per_run } : null,
    eta_at: eta,
    taskgroup_id: batch.taskgroup_id,
    created_at: batch.created_at,
    updated_at: batch.updated_at,
    closed_at: batch.closed_at,
    cancelled_at: batch.cancelled_at,
    completed_at: batch.completed_at,
  };
}

export async function listOwnedBatches(
  ctx: ServiceContext,
  query: PageRequest & { apiKeyId: string; status?: BatchStatus | undefined },
): Promise<{ batches: BatchView[]; nextCursor: string | null }> {
  const rows = await listBatchRows(ctx.db, { ...query, beforeId: beforeIdOf(query.cursor) });
  const { items, nextCursor } = toPage(rows, query.limit);
  return { batches: items.map((b) => batchView(ctx, b)), nextCursor };
}
