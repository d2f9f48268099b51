// batches: one list of inputs run with one template (migration 0014). Each input is an ordinary run
// (runs.batch_id, runs.batch_index); the batch row holds what the list shares and where its
// submission and bulk result fetch have got to.

import { type HeldRow, releaseHeld } from "./dispatch";
import { pageStatement } from "./page";
import { TIMELINE_INLINE_MAX, timelineAppendSql, timelineSet } from "./run-events";
import { recordAcceptedBatchSpend } from "./spend";

export const BATCH_STATUSES = ["open", "submitting", "running", "completed", "cancelled"] as const;
export type BatchStatus = (typeof BATCH_STATUSES)[number];

/** A batch as the code uses it: JSON columns parsed. Field names are the column names. */
export interface Batch {
  id: string;
  api_key_id: string;
  name: string | null;
  status: BatchStatus;
  /** The fields of a run except its input (processor, task_spec, source_policy, …). */
  template: Record<string, unknown>;
  callback_url: string | null;
  callback_per_run: boolean;
  taskgroup_id: string | null;
  input_count: number;
  /**
   * Runs by status, kept on the row (migration 0022): the inserts count their inputs as `submitting`,
   * a trigger on runs counts every later change. Statuses with no run are absent.
   */
  status_counts: Record<string, number>;
  results_event_id: string | null;
  idempotency_key: string | null;
  request_hash: string | null;
  created_at: string;
  updated_at: string;
  closed_at: string | null;
  cancelled_at: string | null;
  completed_at: string | null;
  next_sweep_at: string | null;
  lease_until: string | null;
  // Where the submission has got to (migration 0018; services/batch-submission.ts).
  /** The batch_index of the first input not yet handed to Parallel. */
  submit_next?: number;
  /** While an add-runs call is in flight, or its answer was lost: the end of its chunk (exclusive). */
  chunk_end?: number | null;
  /** Failed tries of the current chunk. */
  submit_attempts?: number;
  /** When Parallel last accepted a chunk. */
  last_chunk_at?: string | null;
  /** The runs stream's cursor of the last chunk Parallel accepted: a lost answer is looked for from there. */
  run_cursor?: string | null;
  /** Since when Parallel has refused the current chunk for taskrelay's credentials or credit (401/402); migration 0022. */
  submit_operator_since?: string | null;
}

type BatchRow = Omit<Batch, "template" | "callback_per_run" | "status_counts"> & {
  template: string;
  callback_per_run: number;
  status_counts: string;
};

export function rowToBatch(row: BatchRow): Batch {
  return {
    ...row,
    template: JSON.parse(row.template) as Record<string, unknown>,
    callback_per_run: row.callback_per_run === 1,
    status_counts: parseStatusCounts(row.status_counts),
  };
}

/** The status_counts column: statuses a run left (counted down to 0) are dropped. */
export function parseStatusCounts(text: string): Record<string, number> {
  const counts = JSON.parse(text) as Record<string, number>;
  return Object.fromEntries(Object.entries(counts).filter(([, n]) => n !== 0));
}

/** The batch, if it exists and (when `apiKeyId` is given) belongs to that key. */
export async function findBatch(db: D1Database, id: string, apiKeyId?: string): Promise<Batch | null> {
  const row = apiKeyId
    ? await db
        .prepare("SELECT * FROM batches WHERE id = ? AND api_key_id = ?")
        .bind(id, apiKeyId)
        .first<BatchRow>()
    : await db.prepare("SELECT * FROM batches WHERE id = ?").bind(id).first<BatchRow>();
  return row ? rowToBatch(row) : null;
}

// Statements of the batch API and its submission (services/batches.ts, services/batch-submission.ts).

/**
 * The batch row, its `input_count` inputs counted as `submitting`: it must be in the same D1 batch
 * as the insert of those runs (insertBatchRuns), so both happen or neither.
 */
export function insertBatch(db: D1Database, batch: Batch): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO batches (id, api_key_id, name, status, template, callback_url, callback_per_run, input_count,
         idempotency_key, request_hash, created_at, updated_at, closed_at, next_sweep_at, lease_until, status_counts)
       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
         CASE WHEN ?8 > 0 THEN json_object('submitting', ?8) ELSE '{}' END)`,
    )
    .bind(
      batch.id,
      batch.api_key_id,
      batch.name,
      batch.status,
      JSON.stringify(batch.template),
      batch.callback_url,
      batch.callback_per_run ? 1 : 0,
      batch.input_count,
      batch.idempotency_key,
      batch.request_hash,
      batch.created_at,
      batch.updated_at,
      batch.closed_at,
      batch.next_sweep_at,
      batch.lease_until,
    );
}

export async function findBatchByIdempotencyKey(
  db: D1Database,
  apiKeyId: string,
  key: string,
): Promise<Batch | null> {
  const row = await db
    .prepare("SELECT * FROM batches WHERE api_key_id = ? AND idempotency_key = ?")
    .bind(apiKeyId, key)
    .first<BatchRow>();
  return row ? rowToBatch(row) : null;
}

/** Newest first, one row more than the page (db/page.ts). */
export async function listBatches(
  db: D1Database,
  query: {
    apiKeyId: string | null;
    status?: BatchStatus | undefined;
    beforeId?: string | undefined;
    limit: number;
  },
): Promise<Batch[]> {
  const { results } = await pageStatement(db, "batches", {
    filters: { api_key_id: query.apiKeyId, status: query.status },
    beforeId: query.beforeId,
    limit: query.limit,
  }).all<BatchRow>();
  return results.map(rowToBatch);
}

/** What every run of a batch shares, as the runs table stores it (JSON columns as text). */
export interface BatchRunShared {
  apiKeyId: string;
  batchId: string;
  processor: string;
  taskSpec: string | null;
  sourcePolicy: string | null;
  previousInteractionId: string | null;
  enableEvents: number | null;
  mcpServers: string | null;
  callbackUrl: string | null;
  relayWarnings: string | null;
  /** Each run's price (micro-USD) and the budget month it was reserved against (null: none). */
  costMicroUsd: number;
  spendMonth: string | null;
  at: string;
}

/** One input's own columns: its run id, its position, its input and metadata as JSON text. */
export interface BatchRunRow {
  id: string;
  index: number;
  input: string;
  metadata: string | null;
}

/**
 * The rows of one insert travel as one JSON array bound to one parameter, expanded by json_each: a
 * statement binds 14 parameters however many rows it inserts, and its SQL stays a few hundred bytes.
 * The parameter is kept under 600,000 UTF-16 units (at most 1.8 MB of UTF-8), inside D1's 2 MB string.
 */
export const INSERT_ROWS_MAX_UNITS = 600_000;

/** A batch run's timeline as stored: its `stored` event, in the row as every run's (db/run-events.ts). */
const STORED_TIMELINE =
  "json_array(json_object('at', ?, 'kind', 'stored', 'detail', json_object('batch_id', ?, 'batch_index', json_extract(value, '$[3]'))))";

/**
 * Batch runs are stored `submitting` with nothing due (next_sweep_at NULL): the batch submits them,
 * a chunk at a time through its Task Group, never the resubmit_runs job one by one.
 */
export function insertBatchRuns(
  db: D1Database,
  shared: BatchRunShared,
  rows: BatchRunRow[],
  /** Adding to an existing batch: insert only while it is open and still has this many inputs. */
  whileOpenWithCount?: number,
): D1PreparedStatement[] {
  const guard =
    whileOpenWithCount === undefined
      ? { sql: "", params: [] }
      : {
          sql: "WHERE EXISTS (SELECT 1 FROM batches WHERE id = ? AND status = 'open' AND input_count = ?)",
          params: [shared.batchId, whileOpenWithCount],
        };
  const statements: D1PreparedStatement[] = [];
  let part: string[] = [];
  let units = 2;
  const flush = () => {
    if (part.length === 0) return;
    statements.push(
      db
        .prepare(
          `INSERT INTO runs (id, api_key_id, status, processor, input, task_spec, metadata, source_policy,
             previous_interaction_id, enable_events, mcp_servers, callback_url, relay_warnings, created_at,
             updated_at, attempts, next_sweep_at, lease_until, batch_id, batch_index, cost_micro_usd, spend_month,
             timeline, timeline_count)
           SELECT json_extract(value, '$[0]'), ?, 'submitting', ?, json_extract(value, '$[1]'), ?,
             json_extract(value, '$[2]'), ?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, NULL, ?, json_extract(value, '$[3]'), ?, ?,
             ${STORED_TIMELINE}, 1
           FROM json_each(?) ${guard.sql}`,
        )
        .bind(
          shared.apiKeyId,
          shared.processor,
          shared.taskSpec,
          shared.sourcePolicy,
          shared.previousInteractionId,
          shared.enableEvents,
          shared.mcpServers,
          shared.callbackUrl,
          shared.relayWarnings,
          shared.at,
          shared.at,
          shared.batchId,
          shared.costMicroUsd,
          shared.spendMonth,
          shared.at,
          shared.batchId,
          `[${part.join(",")}]`,
          ...guard.params,
        ),
    );
    part = [];
    units = 2;
  };
  for (const row of rows) {
    const element = JSON.stringify([row.id, row.input, row.metadata, row.index]);
    if (units + element.length + 1 > INSERT_ROWS_MAX_UNITS) flush();
    part.push(element);
    units += element.length + 1;
  }
  flush();
  return statements;
}

/** No more inputs: still sending (inputs not yet at Parallel) → submitting, else running. */
export function closeBatchStatement(db: D1Database, id: string, at: string): D1PreparedStatement {
  return db
    .prepare(
      `UPDATE batches SET closed_at = ?, updated_at = ?, next_sweep_at = ?,
         status = CASE WHEN submit_next < input_count OR chunk_end IS NOT NULL THEN 'submitting' ELSE 'running' END
       WHERE id = ? AND status = 'open' RETURNING *`,
    )
    .bind(at, at, at, id);
}

/**
 * Inputs added to an open batch: its count moves on (and its `submitting` count with it), guarded by
 * the count the rows were numbered from, as their insert is (insertBatchRuns `whileOpenWithCount`).
 */
export function addBatchInputsStatement(
  db: D1Database,
  batch: Pick<Batch, "id" | "input_count">,
  added: number,
  at: string,
): D1PreparedStatement {
  return db
    .prepare(
      `UPDATE batches SET input_count = input_count + ?1, updated_at = ?2,
         status_counts = json_set(status_counts, '$.submitting', COALESCE(json_extract(status_counts, '$.submitting'), 0) + ?1),
         next_sweep_at = CASE WHEN next_sweep_at IS NULL OR next_sweep_at > ?2 THEN ?2 ELSE next_sweep_at END
       WHERE id = ?3 AND status = 'open' AND input_count = ?4 RETURNING *`,
    )
    .bind(added, at, batch.id, batch.input_count);
}

/** Applies `changes` to the batch when `guard` holds; the batch afterwards, or null. */
export async function updateBatch(
  db: D1Database,
  id: string,
  changes: Partial<Omit<Batch, "id" | "api_key_id" | "template" | "callback_per_run">>,
  guard: { sql: string; params?: unknown[] } = { sql: "1" },
): Promise<Batch | null> {
  const row = await updateBatchStatement(db, id, changes, guard).first<BatchRow>();
  return row ? rowToBatch(row) : null;
}

export function updateBatchStatement(
  db: D1Database,
  id: string,
  changes: Partial<Omit<Batch, "id" | "api_key_id" | "template" | "callback_per_run">>,
  guard: { sql: string; params?: unknown[] } = { sql: "1" },
): D1PreparedStatement {
  const columns = Object.keys(changes) as Array<keyof typeof changes>;
  const sets = columns.map((c) => `${c} = ?`);
  return db
    .prepare(`UPDATE batches SET ${sets.join(", ")} WHERE id = ? AND (${guard.sql}) RETURNING *`)
    .bind(...columns.map((c) => changes[c] ?? null), id, ...(guard.params ?? []));
}

export function returnedBatch(result: D1Result | undefined): Batch | null {
  const row = result?.results[0] as BatchRow | undefined;
  return row ? rowToBatch(row) : null;
}

/** Statuses in which a batch has inputs to hand to Parallel (or a chunk in doubt, once cancelled). */
const SUBMITTABLE = "(status IN ('open', 'submitting') OR (status = 'cancelled' AND chunk_end IS NOT NULL))";

/** The submission job's claim: due batches with something to submit, leased to their messages. */
export async function claimDueBatches(
  db: D1Database,
  now: string,
  leaseUntil: string,
  limit: number,
): Promise<Batch[]> {
  const { results } = await db
    .prepare(
      `UPDATE batches SET lease_until = ?
       WHERE id IN (
         SELECT id FROM batches
         WHERE next_sweep_at <= ? AND ${SUBMITTABLE} AND (lease_until IS NULL OR lease_until <= ?)
         ORDER BY next_sweep_at LIMIT ?
       )
       RETURNING *`,
    )
    .bind(leaseUntil, now, now, limit)
    .all<BatchRow>();
  return results.map(rowToBatch);
}

/** Takes one batch for its message: due, and free or held under `heldLease`; renews the lease. */
export async function takeDueBatch(
  db: D1Database,
  id: string,
  now: string,
  leaseUntil: string,
  heldLease: string,
): Promise<Batch | null> {
  const row = await db
    .prepare(
      `UPDATE batches SET lease_until = ?
       WHERE id = ? AND next_sweep_at <= ? AND ${SUBMITTABLE}
         AND (lease_until IS NULL OR lease_until <= ? OR lease_until = ?)
       RETURNING *`,
    )
    .bind(leaseUntil, id, now, now, heldLease)
    .first<BatchRow>();
  return row ? rowToBatch(row) : null;
}

/** Gives batches back, due again at `at` (db/dispatch.ts releaseSql). */
export function releaseBatches(db: D1Database, held: readonly HeldRow[], at: string, latest: string) {
  return releaseHeld(db, { table: "batches", due: "next_sweep_at", dispatch: false }, held, at, latest);
}

/** A chunk's runs still to be sent: in input order from `from`, those Parallel has not accepted. */
export async function chunkRuns(
  db: D1Database,
  batchId: string,
  from: number,
  end: number,
): Promise<
  Array<{ id: string; batch_index: number; input: string; metadata: string | null; created_at: string }>
> {
  const { results } = await db
    .prepare(
      `SELECT id, batch_index, input, metadata, created_at FROM runs
       WHERE batch_id = ? AND batch_index >= ? AND batch_index < ? AND status = 'submitting'
         AND parallel_run_id IS NULL
       ORDER BY batch_index`,
    )
    .bind(batchId, from, end)
    .all<{ id: string; batch_index: number; input: string; metadata: string | null; created_at: string }>();
  return results;
}

/**
 * Records Parallel's run ids for runs of the batch, by their batch_index. The ids travel as one JSON
 * array over the chunk's index range (null where a run is not among them), read by position, so the
 * update walks `runs_by_batch` over the range only (a join with json_each scanned every run: 12 M
 * rows read for 3,000 inputs). Guarded on `submitting` as every submission is. The runs become
 * `queued`, with a deadline and a first poll as a single run accepted by a create.
 */
export function acceptBatchRunsStatements(
  db: D1Database,
  batchId: string,
  accepted: Array<{ batchIndex: number; parallelRunId: string }>,
  at: string,
  deadlineAt: string,
  firstPollAt: string,
  detail: Record<string, unknown>,
): D1PreparedStatement[] {
  const from = Math.min(...accepted.map((a) => a.batchIndex));
  const end = Math.max(...accepted.map((a) => a.batchIndex)) + 1;
  const ids: Array<string | null> = new Array(end - from).fill(null);
  for (const a of accepted) ids[a.batchIndex - from] = a.parallelRunId;
  // D1 binds a JavaScript number as a REAL: the position is cast back to an integer for the path.
  const idAt = "json_extract(?1, '$[' || CAST(batch_index - ?2 AS INTEGER) || ']')";
  const range = "batch_id = ?3 AND batch_index >= ?2 AND batch_index < ?4";
  const json = JSON.stringify(ids);
  const submitted = `json_object('at', ?5, 'kind', 'submitted', 'detail', json_patch(?8, json_object('parallel_run_id', ${idAt})))`;
  return [
    // The `submitted` event goes into each run's timeline in the same write (db/run-events.ts).
    db
      .prepare(
        `UPDATE runs SET parallel_run_id = ${idAt}, interaction_id = ${idAt}, status = 'queued', submitted_at = ?5,
           deadline_at = ?6, next_sweep_at = ?7, attempts = 0, lease_until = NULL, updated_at = ?5,
           ${timelineAppendSql(submitted)}
         WHERE ${range} AND status = 'submitting' AND ${idAt} IS NOT NULL`,
      )
      .bind(json, from, batchId, end, at, deadlineAt, firstPollAt, JSON.stringify(detail)),
    // A run whose timeline was full: its event as a run_events row (none in the usual case).
    db
      .prepare(
        `INSERT INTO run_events (run_id, at, kind, detail)
         SELECT id, ?5, 'submitted', json_patch(?6, json_object('parallel_run_id', parallel_run_id))
         FROM runs WHERE ${range} AND submitted_at = ?5 AND parallel_run_id = ${idAt}
           AND timeline_count > ${TIMELINE_INLINE_MAX}`,
      )
      .bind(json, from, batchId, end, at, JSON.stringify(detail)),
    // Only the runs this update accepted (submitted_at = at): a run a webhook gave its id first was
    // counted then (completion.ts), and runs of the range accepted by an earlier call are not again.
    recordAcceptedBatchSpend(db, batchId, from, end, at),
  ];
}

/**
 * Ends runs of the batch that were never created at Parallel (a refused chunk, a chunk given up on, a
 * cancelled batch): `submitting` and without a Parallel id, in [from, end). A run with a callback
 * stays due for the finish_runs job, which delivers its outcome as for any run.
 */
export function endUnsubmittedRunsStatements(
  db: D1Database,
  batchId: string,
  /** "unsent": from the first input neither sent nor in flight (a cancel, read as it happens). */
  range: { from: number | "unsent"; end: number | null },
  outcome: {
    status: "rejected" | "failed" | "cancelled";
    error: { code: string; message: string; detail?: unknown };
  },
  event: { kind: "rejected" | "submit_failed" | "status_changed"; detail: Record<string, unknown> },
  at: string,
  finishDueAt: string,
): D1PreparedStatement[] {
  const end = range.end ?? Number.MAX_SAFE_INTEGER;
  const from =
    range.from === "unsent" ? "(SELECT COALESCE(chunk_end, submit_next) FROM batches WHERE id = ?)" : "?";
  const fromParam = range.from === "unsent" ? batchId : range.from;
  const inRange = `batch_id = ? AND batch_index >= ${from} AND batch_index < ?`;
  const where = `${inRange} AND status = 'submitting' AND parallel_run_id IS NULL`;
  // The runs the update below ended (after it): those of the range it gave this status at `at`.
  const ended = `${inRange} AND parallel_run_id IS NULL AND status = ? AND finished_at = ?`;
  const timeline = timelineSet([{ at, kind: event.kind, detail: event.detail }]);
  return [
    // Their reservations given back (as releaseRefusedRunSpend does for a single run), before the
    // update ends them: the runs reserved against the key's current budget month.
    db
      .prepare(
        `UPDATE api_keys SET budget_spent_micro_usd = MAX(0, budget_spent_micro_usd -
           (SELECT COALESCE(SUM(cost_micro_usd), 0) FROM runs WHERE ${where} AND spend_month = api_keys.budget_month))
         WHERE id = (SELECT api_key_id FROM batches WHERE id = ?)`,
      )
      .bind(batchId, fromParam, end, batchId),
    // The event goes into each run's timeline in the same write (db/run-events.ts).
    db
      .prepare(
        `UPDATE runs SET status = ?, error = ?, finished_at = ?, updated_at = ?, lease_until = NULL,
           next_sweep_at = CASE WHEN callback_url IS NOT NULL THEN ? ELSE NULL END, ${timeline.sql}
         WHERE ${where}`,
      )
      .bind(
        outcome.status,
        JSON.stringify(outcome.error),
        at,
        at,
        finishDueAt,
        ...timeline.params,
        batchId,
        fromParam,
        end,
      ),
    // A run whose timeline was full: its event as a run_events row (none in the usual case).
    db
      .prepare(
        `INSERT INTO run_events (run_id, at, kind, detail) SELECT id, ?, ?, ? FROM runs
         WHERE ${ended} AND timeline_count > ${TIMELINE_INLINE_MAX}`,
      )
      .bind(at, event.kind, JSON.stringify(event.detail), batchId, fromParam, end, outcome.status, at),
  ];
}
