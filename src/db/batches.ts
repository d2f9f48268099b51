// batches: one list of inputs run with one template (migration 0014). Each input is an ordinary run
// (runs.batch_id, runs.batch_index); the batch row holds what the list shares and where its
// submission and bulk result fetch have got to.

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
}

type BatchRow = Omit<Batch, "template" | "callback_per_run"> & { template: string; callback_per_run: number };

export function rowToBatch(row: BatchRow): Batch {
  return {
    ...row,
    template: JSON.parse(row.template) as Record<string, unknown>,
    callback_per_run: row.callback_per_run === 1,
  };
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

/** How many of a batch's runs are in each status (statuses with no run are absent). */
export async function batchStatusCounts(db: D1Database, batchId: string): Promise<Record<string, number>> {
  const { results } = await db
    .prepare("SELECT status, COUNT(*) AS n FROM runs WHERE batch_id = ? GROUP BY status")
    .bind(batchId)
    .all<{ status: string; n: number }>();
  return Object.fromEntries(results.map((r) => [r.status, r.n]));
}
