// A batch's submission to Parallel: one Task Group per batch, its inputs added in input order in
// add-runs calls of up to 1,000 (one request against Parallel's rate limit each). Each input carries
// the webhook and taskrelay's run id in its metadata, exactly as a single run's create does
// (services/runs.ts parallelCreateBody), so the webhook pipeline, the poller and callback delivery
// treat batch runs as any run once Parallel's run ids are stored on them.
//
// Never twice. Parallel's add-runs has no idempotency key, and a call whose answer is lost (a timeout,
// a 5xx from a proxy, a worker killed mid-call) may have created its runs. So before each call the
// chunk is marked in flight (batches.chunk_end), and a batch found with a chunk in flight is first
// reconciled: the group's runs stream, read from the cursor of the last chunk Parallel accepted,
// names every run the lost call made by the taskrelay run id in its metadata; those are recorded,
// and only the chunk's runs not found are sent again. A 429 is the one failure known to have created
// nothing (Parallel refuses it before reading the inputs), so it clears the mark. The stream is read
// no sooner than the lease's end or the retry's backoff after the lost call (30 s or more at scale
// 1), so Parallel has long stored what it made.
import {
  acceptBatchRunsStatements,
  type Batch,
  chunkRuns,
  endUnsubmittedRunsStatements,
  returnedBatch,
  updateBatch,
  updateBatchStatement,
} from "../db/batches";
import type { CreateRunBody, ParallelFailure } from "../parallel/client";
import { RUN_ID_METADATA_KEY } from "../parallel/task-spec-checks";
import type { ServiceContext } from "./context";
import {
  noteOperatorProblem,
  type OperatorFailure,
  operatorReason,
  resolveOperatorProblem,
} from "./operator-alerts";
import { parallelCreateBody } from "./runs";
import { addMs, deadlineAt, LEASE_MS, notAfter, retryAt } from "./timing";

/** Parallel's most inputs in one add-runs call. */
export const CHUNK_SIZE = 1000;
/** Add-runs calls one queue message makes; the rest of the batch continues in a follow-up message. */
export const CHUNKS_PER_MESSAGE = 3;
/**
 * How long a worker owns a batch's submission: three add-runs calls of up to 30 s each, their
 * D1 writes and the limiter. Not scaled: it must outlast real calls.
 */
export const BATCH_LEASE_MS = 3 * 60_000;

/**
 * The most D1 calls plus outbound requests one message costs: taking the batch (1); the group
 * created and stored (2); per step, at most a chunk's rows, the limiter, the mark, the add-runs call
 * and the record (5; reconciling a chunk in doubt is 3: its rows, the stream, the record); the
 * release, or the follow-up held and sent (2).
 */
export const SUBMIT_BATCH_COST = 1 + 2 + CHUNKS_PER_MESSAGE * 5 + 2;

/**
 * The create limiter (src/limiter/): one slot per add-runs call, as Parallel counts it. This is
 * the one place the submission asks. A slot a moment ahead (at most the limiter's hold, about a
 * second) is waited for here; no slot: the batch is due again when the limiter says.
 */
export async function acquireCreateSlot(
  ctx: ServiceContext,
  apiKeyId: string,
): Promise<{ ok: true } | { ok: false; retryAt: Date }> {
  const admission = await ctx.acquireCreates(apiKeyId, 1);
  if (!admission.granted) return { ok: false, retryAt: addMs(ctx.now(), admission.retryInMs) };
  if (admission.waitMs > 0) await new Promise((resolve) => setTimeout(resolve, admission.waitMs));
  return { ok: true };
}

/** What one message did, and whether the batch continues in a follow-up message (cron/work.ts Worked). */
export interface Worked {
  outcomes: string[];
  later?: { at: string; lease: string };
}

/** A run Parallel accepted: its position in the batch and Parallel's run id. */
type Accepted = { batchIndex: number; parallelRunId: string };

type Step = { batch: Batch; outcome: string } | { done: Worked };

/** The submit_batches job's work on one batch it holds: up to CHUNKS_PER_MESSAGE add-runs calls. */
export async function submitBatch(ctx: ServiceContext, held: Batch, now: Date): Promise<Worked> {
  let batch = held;
  const outcomes: string[] = [];
  for (let calls = 0; calls < CHUNKS_PER_MESSAGE; ) {
    const step = await nextStep(ctx, batch, now);
    if ("done" in step) return { ...step.done, outcomes: [...outcomes, ...step.done.outcomes] };
    batch = step.batch;
    outcomes.push(step.outcome);
    if (step.outcome !== "group_created") calls++;
  }
  // More to send: a follow-up message, the batch held for it.
  const lease = addMs(ctx.now(), BATCH_LEASE_MS).toISOString();
  const at = ctx.now().toISOString();
  const kept = await updateBatch(
    ctx.db,
    batch.id,
    { lease_until: lease, next_sweep_at: at },
    leaseGuard(batch),
  );
  if (!kept) return { outcomes: [...outcomes, "lease_lost"] };
  return { outcomes, later: { at, lease } };
}

const leaseGuard = (batch: Batch) => ({ sql: "lease_until = ?", params: [batch.lease_until] });

async function nextStep(ctx: ServiceContext, batch: Batch, now: Date): Promise<Step> {
  if (batch.chunk_end != null) return reconcile(ctx, batch);
  if (batch.status === "cancelled") return { done: await release(ctx, batch, ["finished"]) };
  const from = batch.submit_next ?? 0;
  if (from >= batch.input_count) return { done: await release(ctx, batch, ["finished"]) };
  const end = Math.min(from + CHUNK_SIZE, batch.input_count);
  // A chunk waiting for the operator (401/402) is not given up by attempts, only at its deadline.
  const attempts = batch.submit_attempts ?? 0;
  if (!batch.submit_operator_since && attempts >= ctx.config.SUBMIT_MAX_ATTEMPTS)
    return giveUp(ctx, batch, end);
  if (!batch.taskgroup_id) return createGroup(ctx, batch, end);
  return sendChunk(ctx, batch, end, now);
}

async function createGroup(ctx: ServiceContext, batch: Batch, end: number): Promise<Step> {
  // Parallel's metadata keys are at most 16 characters.
  const group = await ctx.parallel.createTaskGroup({ taskrelay_batch: batch.id });
  // A lost answer leaves an empty group at Parallel, which costs nothing; the next try makes another.
  if (!group.ok) {
    // Refused outright: no input of the batch can be submitted now.
    if (group.kind === "rejected") return endChunk(ctx, batch, batch.input_count, "rejected", group);
    // The first inputs were stored with the batch: their deadline bounds the wait.
    if (group.kind === "operator") return waitForOperator(ctx, batch, group, end, batch.created_at);
    return { done: await retryLater(ctx, batch, group, null) };
  }
  const at = ctx.now().toISOString();
  const stored = await updateBatch(
    ctx.db,
    batch.id,
    { taskgroup_id: group.value.taskgroup_id, updated_at: at },
    leaseGuard(batch),
  );
  if (!stored) return { done: { outcomes: ["lease_lost"] } };
  ctx.log.info("batch.group_created", { batch_id: batch.id, taskgroup_id: group.value.taskgroup_id });
  return { batch: stored, outcome: "group_created" };
}

async function sendChunk(ctx: ServiceContext, batch: Batch, end: number, now: Date): Promise<Step> {
  const from = batch.submit_next ?? 0;
  const rows = await chunkRuns(ctx.db, batch.id, from, end);
  if (rows.length === 0) return advance(ctx, batch, end, [], null, "chunk_empty");
  const slot = await acquireCreateSlot(ctx, batch.api_key_id);
  if (!slot.ok) {
    const released = await updateBatch(
      ctx.db,
      batch.id,
      { next_sweep_at: slot.retryAt.toISOString(), lease_until: null },
      leaseGuard(batch),
    );
    return { done: { outcomes: [released ? "throttled" : "lease_lost"] } };
  }
  // In flight from here: should the answer be lost, the next worker reconciles before sending again.
  // Guarded on the status too, so a cancel that came first stops the call.
  // The lease is renewed with the mark, so it outlasts the call by far (BATCH_LEASE_MS).
  const marked = await updateBatch(
    ctx.db,
    batch.id,
    {
      chunk_end: end,
      updated_at: ctx.now().toISOString(),
      lease_until: addMs(ctx.now(), BATCH_LEASE_MS).toISOString(),
    },
    { sql: "lease_until = ? AND status IN ('open', 'submitting')", params: [batch.lease_until] },
  );
  if (!marked) return { done: await releaseIfHeld(ctx, batch) };

  const template = batch.template;
  const inputs = rows.map((row) => {
    const body = parallelCreateBody(ctx, {
      id: row.id,
      processor: String(template.processor),
      input: JSON.parse(row.input) as CreateRunBody["input"],
      // The spec goes once, as the call's default_task_spec.
      task_spec: null,
      metadata: row.metadata ? (JSON.parse(row.metadata) as Record<string, string | number | boolean>) : null,
      source_policy: (template.source_policy as Record<string, unknown> | undefined) ?? null,
      previous_interaction_id: (template.previous_interaction_id as string | undefined) ?? null,
      enable_events: (template.enable_events as boolean | undefined) ?? null,
      mcp_servers: (template.mcp_servers as Array<Record<string, unknown>> | undefined) ?? null,
    });
    return body;
  });
  const taskSpec = template.task_spec as CreateRunBody["task_spec"];
  const outcome = await ctx.parallel.addTaskGroupRuns(marked.taskgroup_id as string, inputs, taskSpec);
  if (outcome.ok) {
    const ids = outcome.value.run_ids;
    if (ids.length !== rows.length) {
      // Not what the API promises; the reconciliation by metadata sorts it out on the next try.
      ctx.log.error("batch.run_ids_mismatch", { batch_id: batch.id, sent: rows.length, got: ids.length });
      return { done: await retryLater(ctx, marked, null, end) };
    }
    const pairs = rows.map((row, i) => ({ batchIndex: row.batch_index, parallelRunId: ids[i] as string }));
    return advance(ctx, marked, end, pairs, outcome.value.run_cursor, "chunk_submitted", now);
  }
  if (outcome.kind === "rejected" || outcome.kind === "not_found" || outcome.kind === "still_active") {
    return endChunk(ctx, marked, end, "rejected", outcome);
  }
  // The chunk's runs are in input order: the first was stored first, so its deadline comes first.
  if (outcome.kind === "operator") {
    return waitForOperator(ctx, marked, outcome, end, rows[0]?.created_at ?? marked.created_at);
  }
  // 429: refused before anything was made, so nothing is in doubt. Anything else may have made runs.
  const inDoubt = !(outcome.kind === "transient" && outcome.status === 429);
  return { done: await retryLater(ctx, marked, outcome, inDoubt ? end : null) };
}

/**
 * A chunk in doubt: find the runs the lost call made in the group's runs stream (by the run id in
 * their metadata) and record them. The chunk's runs not found are sent again by the next step.
 */
async function reconcile(ctx: ServiceContext, batch: Batch): Promise<Step> {
  const from = batch.submit_next ?? 0;
  const end = batch.chunk_end as number;
  const rows = await chunkRuns(ctx.db, batch.id, from, end);
  const wanted = new Set(rows.map((r) => r.id));
  const indexOf = new Map(rows.map((r) => [r.id, r.batch_index]));
  const found: Accepted[] = [];
  if (wanted.size > 0 && batch.taskgroup_id) {
    const stream = await ctx.parallel.taskGroupRuns(batch.taskgroup_id, {}, batch.run_cursor ?? null);
    if (!stream.ok) return { done: await retryLater(ctx, batch, stream, end) };
    try {
      for await (const event of stream.value) {
        if (event.type === "error") throw new Error(`runs stream error: ${event.error.message}`);
        if (event.type !== "task_run.state") continue;
        const ours = event.run.metadata?.[RUN_ID_METADATA_KEY];
        const batchIndex = typeof ours === "string" ? indexOf.get(ours) : undefined;
        if (batchIndex !== undefined) {
          found.push({ batchIndex, parallelRunId: event.run.run_id });
          if (found.length === wanted.size) break;
        }
      }
    } catch (error) {
      ctx.log.warn("batch.reconcile_failed", { batch_id: batch.id, error: String(error) });
      return { done: await retryLater(ctx, batch, null, end) };
    }
  }
  ctx.log.info("batch.reconciled", { batch_id: batch.id, in_doubt: wanted.size, found: found.length });
  if (found.length === wanted.size) {
    return advance(ctx, batch, end, found, batch.run_cursor ?? null, "chunk_recovered", ctx.now());
  }
  // Some (in practice all: add-runs is all or nothing) were not made: record any found, send the rest.
  const at = ctx.now().toISOString();
  const results = await ctx.db.batch([
    ...acceptStatements(ctx, batch, found, ctx.now(), { recovered: true }),
    updateBatchStatement(ctx.db, batch.id, { chunk_end: null, updated_at: at }, leaseGuard(batch)),
  ]);
  const next = returnedBatch(results.at(-1));
  if (!next) return { done: { outcomes: ["lease_lost"] } };
  if (next.status === "cancelled") {
    // Cancelled while the chunk was in doubt: what was not made is not sent.
    return endChunk(ctx, next, end, "cancelled", null);
  }
  return { batch: next, outcome: "chunk_not_made" };
}

function acceptStatements(
  ctx: ServiceContext,
  batch: Batch,
  pairs: Accepted[],
  now: Date,
  detail: Record<string, unknown> = {},
): D1PreparedStatement[] {
  if (pairs.length === 0) return [];
  const processor = String(batch.template.processor);
  return acceptBatchRunsStatements(
    ctx.db,
    batch.id,
    pairs,
    now.toISOString(),
    deadlineAt(ctx.config, processor, now).toISOString(),
    deadlineAt(ctx.config, processor, now).toISOString(), // first poll: at the deadline (i15-burst)
    { taskgroup_id: batch.taskgroup_id, attempt: (batch.submit_attempts ?? 0) + 1, ...detail },
  );
}

/** Parallel accepted the chunk: its run ids recorded and the submission moved past it, in one batch. */
async function advance(
  ctx: ServiceContext,
  batch: Batch,
  end: number,
  pairs: Accepted[],
  runCursor: string | null,
  outcome: string,
  now: Date = ctx.now(),
): Promise<Step> {
  const at = now.toISOString();
  const results = await ctx.db.batch([
    ...acceptStatements(ctx, batch, pairs, now, outcome === "chunk_recovered" ? { recovered: true } : {}),
    updateBatchStatement(
      ctx.db,
      batch.id,
      {
        submit_next: end,
        chunk_end: null,
        submit_attempts: 0,
        submit_operator_since: null,
        updated_at: at,
        ...(pairs.length > 0 ? { last_chunk_at: at, run_cursor: runCursor ?? batch.run_cursor ?? null } : {}),
      },
      leaseGuard(batch),
    ),
    ...(pairs.length > 0 ? [resolveOperatorProblem(ctx)] : []),
  ]);
  const next = returnedBatch(results[results.length - (pairs.length > 0 ? 2 : 1)]);
  if (!next) return { done: { outcomes: ["lease_lost"] } };
  ctx.log.info("batch.chunk_accepted", { batch_id: batch.id, runs: pairs.length, submit_next: end, outcome });
  return { batch: next, outcome };
}

/** The chunk's runs never made at Parallel end (refused, given up, cancelled); the batch moves on. */
async function endChunk(
  ctx: ServiceContext,
  batch: Batch,
  end: number,
  status: "rejected" | "failed" | "cancelled",
  failure: ParallelFailure | null,
  why?: string,
): Promise<Step> {
  const now = ctx.now();
  const at = now.toISOString();
  const from = batch.submit_next ?? 0;
  const message =
    why ??
    (status === "rejected" && failure
      ? `Parallel refused the batch's ${batch.taskgroup_id ? "add-runs call" : "Task Group"} (HTTP ${failure.status}): ${failure.message}`
      : status === "failed"
        ? `Parallel did not accept this input's chunk after ${batch.submit_attempts ?? 0} attempts.`
        : "The batch was cancelled before this input was sent to Parallel.");
  const code =
    status === "rejected" ? "parallel_rejected" : status === "failed" ? "submit_failed" : "batch_cancelled";
  const kind = status === "rejected" ? "rejected" : status === "failed" ? "submit_failed" : "status_changed";
  const results = await ctx.db.batch([
    ...endUnsubmittedRunsStatements(
      ctx.db,
      batch.id,
      { from, end },
      { status, error: { code, message, ...(failure ? { detail: failure.status } : {}) } },
      { kind, detail: { source: "batch", message, ...(failure ? { parallel_status: failure.status } : {}) } },
      at,
      addMs(now, LEASE_MS).toISOString(),
    ),
    updateBatchStatement(
      ctx.db,
      batch.id,
      { submit_next: end, chunk_end: null, submit_attempts: 0, submit_operator_since: null, updated_at: at },
      leaseGuard(batch),
    ),
  ]);
  const next = returnedBatch(results.at(-1));
  if (!next) return { done: { outcomes: ["lease_lost"] } };
  ctx.log.warn("batch.chunk_ended", { batch_id: batch.id, from, end, status });
  return { batch: next, outcome: `chunk_${status}` };
}

async function giveUp(ctx: ServiceContext, batch: Batch, end: number): Promise<Step> {
  ctx.log.error("batch.submit_failed", { batch_id: batch.id, attempts: batch.submit_attempts });
  return endChunk(ctx, batch, end, "failed", null);
}

/**
 * Parallel refused taskrelay's own key or account (401, 402) for this chunk, as it can refuse a single
 * run's create (services/runs.ts waitForOperator): not the inputs' fault. Nothing was made, so nothing
 * is in doubt. The chunk is tried again with backoff until its runs' deadline (from `storedAt`, when
 * its first run was stored), never given up at SUBMIT_MAX_ATTEMPTS; a try failing so at the deadline
 * ends the chunk's runs `failed`. /healthz reports `degraded` meanwhile (the alert noted here).
 */
async function waitForOperator(
  ctx: ServiceContext,
  batch: Batch,
  failure: OperatorFailure,
  end: number,
  storedAt: string,
): Promise<Step> {
  const now = ctx.now();
  const at = now.toISOString();
  const deadline = deadlineAt(ctx.config, String(batch.template.processor), new Date(storedAt)).toISOString();
  const alert = noteOperatorProblem(ctx, failure, "create");
  const reason = operatorReason(failure);
  if (at >= deadline) {
    if (alert.length > 0) await ctx.db.batch(alert);
    const message = `Parallel refused taskrelay's credentials until the runs' deadline (${deadline}); the last error: ${reason}`;
    return endChunk(ctx, batch, end, "failed", failure, message);
  }
  const attempts = (batch.submit_attempts ?? 0) + 1;
  const next = notAfter(retryAt(ctx.config, attempts, now), deadline);
  const results = await ctx.db.batch([
    updateBatchStatement(
      ctx.db,
      batch.id,
      {
        chunk_end: null,
        submit_attempts: attempts,
        submit_operator_since: batch.submit_operator_since ?? at,
        next_sweep_at: next,
        lease_until: null,
        updated_at: at,
      },
      leaseGuard(batch),
    ),
    ...alert,
  ]);
  ctx.log.warn("batch.submit_waiting_for_operator", {
    batch_id: batch.id,
    attempt: attempts,
    parallel_status: failure.status,
    next_attempt_at: next,
    deadline,
  });
  return { done: { outcomes: [returnedBatch(results[0]) ? "retrying" : "lease_lost"] } };
}

/**
 * A failed call: tried again after backoff (Retry-After honoured). `inDoubtEnd` keeps the chunk
 * marked in flight, so the next try reconciles first.
 */
async function retryLater(
  ctx: ServiceContext,
  batch: Batch,
  failure: ParallelFailure | null,
  inDoubtEnd: number | null,
): Promise<Worked> {
  const now = ctx.now();
  const attempts = (batch.submit_attempts ?? 0) + 1;
  const retryAfterMs = failure?.kind === "transient" ? failure.retryAfterMs : undefined;
  const next = retryAt(ctx.config, attempts, now, retryAfterMs).toISOString();
  const alert = failure?.kind === "operator" ? noteOperatorProblem(ctx, failure, "create") : [];
  const results = await ctx.db.batch([
    updateBatchStatement(
      ctx.db,
      batch.id,
      {
        chunk_end: inDoubtEnd,
        submit_attempts: attempts,
        submit_operator_since: null,
        next_sweep_at: next,
        lease_until: null,
        updated_at: now.toISOString(),
      },
      leaseGuard(batch),
    ),
    ...alert,
  ]);
  ctx.log.warn("batch.submit_retry", {
    batch_id: batch.id,
    attempt: attempts,
    parallel_status: failure?.status ?? null,
    in_doubt: inDoubtEnd !== null,
    next_attempt_at: next,
  });
  return { outcomes: [returnedBatch(results[0]) ? "retrying" : "lease_lost"] };
}

/**
 * Nothing left to send (for now): the lease let go. A closed batch is `running` and due now for the
 * work that follows its runs (bulk results, `batch.completed`); an open one waits for inputs or its
 * close (each sets it due again). The guard checks nothing arrived meanwhile.
 */
async function release(ctx: ServiceContext, batch: Batch, outcomes: string[]): Promise<Worked> {
  const at = ctx.now().toISOString();
  const released = await ctx.db
    .prepare(
      `UPDATE batches SET lease_until = NULL, updated_at = ?,
         status = CASE WHEN status = 'submitting' THEN 'running' ELSE status END,
         next_sweep_at = CASE WHEN closed_at IS NULL THEN NULL ELSE ? END
       WHERE id = ? AND lease_until = ? AND chunk_end IS NULL
         AND (submit_next >= input_count OR status = 'cancelled')
       RETURNING id`,
    )
    .bind(at, at, batch.id, batch.lease_until)
    .first();
  if (released) return { outcomes };
  // Inputs came in meanwhile, or the lease is gone: a held batch is due again for the next message.
  return releaseIfHeld(ctx, batch);
}

async function releaseIfHeld(ctx: ServiceContext, batch: Batch): Promise<Worked> {
  const at = ctx.now().toISOString();
  const freed = await updateBatch(
    ctx.db,
    batch.id,
    { lease_until: null, next_sweep_at: at },
    leaseGuard(batch),
  );
  return { outcomes: [freed ? "released" : "lease_lost"] };
}
