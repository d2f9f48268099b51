// batches' bulk-result columns (migration 0019): results_sweep_at says when the batch_results job
// should next read the batch's runs stream, results_lease_until who holds that pass. Separate from
// next_sweep_at / lease_until, which belong to the batch's submission.
import { type HeldRow, releaseHeld } from "./dispatch";
import { TERMINAL_STATUSES } from "./run-states";
import { type Run, rowToRun } from "./runs";

type Row = Record<string, unknown>;

/** The fields the bulk fetch works with (the rest of the batch row comes along: findBatch's shape). */
export interface BatchResultsItem {
  id: string;
  /** The pass's lease: `results_lease_until`, under the name the queue's work items use. */
  lease_until: string | null;
  results_sweep_at: string | null;
}

function toItem(row: Row | null): BatchResultsItem | null {
  if (!row) return null;
  return {
    id: row.id as string,
    lease_until: (row.results_lease_until as string | null) ?? null,
    results_sweep_at: (row.results_sweep_at as string | null) ?? null,
  };
}

const FREE = "(results_lease_until IS NULL OR results_lease_until <= ?1)";

/** Claims up to `limit` batches whose bulk fetch is due, leased until `leaseUntil`: one statement. */
export async function claimDueBatchResults(
  db: D1Database,
  now: string,
  leaseUntil: string,
  limit: number,
): Promise<BatchResultsItem[]> {
  const { results } = await db
    .prepare(
      `UPDATE batches SET results_lease_until = ?2
       WHERE id IN (SELECT id FROM batches WHERE results_sweep_at <= ?1 AND ${FREE}
                    ORDER BY results_sweep_at LIMIT ?3)
         AND results_sweep_at <= ?1 AND ${FREE}
       RETURNING id, results_lease_until, results_sweep_at`,
    )
    .bind(now, leaseUntil, limit)
    .all<Row>();
  return results.map((row) => toItem(row) as BatchResultsItem);
}

/**
 * Takes a batch for its message: due and free, or still held under the message's lease. Renews the
 * lease and moves the due time to `safetyAt`, so a run finishing during the pass pulls it forward
 * again (pokeBatchResultsStatement) and a pass that dies is redone then.
 */
export async function takeBatchResults(
  db: D1Database,
  id: string,
  now: string,
  leaseUntil: string,
  heldLease: string,
  safetyAt: string,
): Promise<BatchResultsItem | null> {
  const row = await db
    .prepare(
      `UPDATE batches SET results_lease_until = ?2, results_sweep_at = ?5
       WHERE id = ?3 AND results_sweep_at IS NOT NULL
         AND ((results_sweep_at <= ?1 AND ${FREE}) OR results_lease_until = ?4)
       RETURNING id, results_lease_until, results_sweep_at`,
    )
    .bind(now, leaseUntil, id, heldLease, safetyAt)
    .first<Row>();
  return toItem(row);
}

/**
 * Gives batches' results passes back, due again at `at` (db/dispatch.ts releaseSql): the take moved
 * the due time on to its safety time, so it is brought back.
 */
export function releaseBatchResults(db: D1Database, held: readonly HeldRow[], at: string, latest: string) {
  return releaseHeld(
    db,
    { table: "batches", lease: "results_lease_until", due: "results_sweep_at", dispatch: false },
    held,
    at,
    latest,
  );
}

/**
 * A batch run reached a terminal status: the bulk fetch is due by `due`. Writes nothing when it is
 * due sooner already (so the runs finishing meanwhile cost no write) or the batch is complete.
 */
export function pokeBatchResultsStatement(db: D1Database, batchId: string, due: string): D1PreparedStatement {
  return db
    .prepare(
      "UPDATE batches SET results_sweep_at = ?1 WHERE id = ?2 AND completed_at IS NULL AND results_sweep_at > ?1",
    )
    .bind(due, batchId);
}

/**
 * The end of a pass: the cursor read so far, and the next due time unless a poke moved it meanwhile
 * (then the poke's stands). `keepLease`: the pass goes on in a follow-up message under the same lease.
 */
export function endBatchResultsPass(
  db: D1Database,
  item: BatchResultsItem,
  at: string,
  cursor: string | null,
  nextAt: string,
  keepLease: boolean,
): D1PreparedStatement {
  return db
    .prepare(
      `UPDATE batches SET results_event_id = ?1,
         results_sweep_at = CASE WHEN results_sweep_at = ?2 THEN ?3 ELSE results_sweep_at END,
         results_lease_until = CASE WHEN ?4 THEN results_lease_until ELSE NULL END, updated_at = ?5
       WHERE id = ?6 AND results_lease_until = ?7 AND completed_at IS NULL`,
    )
    .bind(cursor, item.results_sweep_at, nextAt, keepLease ? 1 : 0, at, item.id, item.lease_until);
}

const TERMINAL_SQL = TERMINAL_STATUSES.map((s) => `'${s}'`).join(", ");
/**
 * A batch run not finished yet. Written as the partial index runs_batch_unfinished (migration 0019)
 * is, so SQLite reads that index rather than the batch's runs.
 */
const UNFINISHED_SQL = `batch_id IS NOT NULL
  AND (status NOT IN (${TERMINAL_SQL}) OR (status = 'completed' AND result_stored_at IS NULL))`;

/**
 * Completes the batch if it is closed and every run is finished (terminal, and a completed run's
 * result stored): one statement, so of two workers noticing at once exactly one completes it. The
 * batch keeps `cancelled` if it was cancelled. RETURNING the batch when this call completed it.
 */
export function completeBatchStatement(db: D1Database, batchId: string, at: string): D1PreparedStatement {
  return db
    .prepare(
      `UPDATE batches SET completed_at = ?1, updated_at = ?1, results_sweep_at = NULL, results_lease_until = NULL,
         status = CASE WHEN status = 'cancelled' THEN status ELSE 'completed' END
       WHERE id = ?2 AND completed_at IS NULL AND closed_at IS NOT NULL
         AND NOT EXISTS (SELECT 1 FROM runs WHERE batch_id = ?2 AND ${UNFINISHED_SQL})
       RETURNING *`,
    )
    .bind(at, batchId);
}

/**
 * The batch.completed delivery, created only when the statement before it (completeBatchStatement)
 * completed the batch and the batch has a callback URL. It names the batch's first run (deliveries
 * reference a run), so UNIQUE (run_id, event) also keeps it to one per batch. Born claimed.
 */
export function insertBatchDeliveryStatement(
  db: D1Database,
  delivery: { id: string; batchId: string; at: string; leaseUntil: string },
): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO deliveries (id, run_id, api_key_id, event, url, status, series, attempt_count,
         next_attempt_at, lease_until, created_at, updated_at, batch_id)
       SELECT ?1, r.id, b.api_key_id, 'batch.completed', b.callback_url, 'pending', 1, 0, ?2, ?3, ?2, ?2, b.id
       FROM batches b JOIN runs r ON r.batch_id = b.id AND r.batch_index = 0
       WHERE b.id = ?4 AND b.callback_url IS NOT NULL AND changes() > 0
       ON CONFLICT (run_id, event) DO NOTHING
       RETURNING *`,
    )
    .bind(delivery.id, delivery.at, delivery.leaseUntil, delivery.batchId);
}

// Every column of a run but its output: the bulk fetch decides per run, and a page of stored outputs
// would weigh what the page's outputs weigh.
const RUN_COLUMNS_BUT_OUTPUT = [
  "id",
  "api_key_id",
  "schedule_id",
  "parallel_run_id",
  "interaction_id",
  "status",
  "processor",
  "input",
  "task_spec",
  "metadata",
  "source_policy",
  "previous_interaction_id",
  "enable_events",
  "mcp_servers",
  "callback_url",
  "idempotency_key",
  "request_hash",
  "warnings",
  "relay_warnings",
  "error",
  "created_at",
  "updated_at",
  "submitted_at",
  "finished_at",
  "result_stored_at",
  "deadline_at",
  "attempts",
  "next_sweep_at",
  "lease_until",
  "not_found_count",
  "output_changed",
  "output_key",
  "output_bytes",
  "batch_id",
  "batch_index",
].join(", ");

/** A batch's runs with these ids (one bound parameter: a JSON array), without their outputs. */
export async function findBatchRunsByIds(db: D1Database, batchId: string, ids: string[]): Promise<Run[]> {
  const { results } = await db
    .prepare(
      `SELECT ${RUN_COLUMNS_BUT_OUTPUT}, NULL AS output FROM runs
       WHERE id IN (SELECT value FROM json_each(?1)) AND batch_id = ?2`,
    )
    .bind(JSON.stringify(ids), batchId)
    .all<Parameters<typeof rowToRun>[0]>();
  return results.map(rowToRun);
}
