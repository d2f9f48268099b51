// overview_hours: the dashboard overview's hourly rollup (migration 0017), kept by triggers on runs and
// deliveries; and the few small reads the overview makes besides it (next schedule runs, open batches).
// Every read here is bounded by the window and the number of keys, never by the history stored.
import { parseStatusCounts } from "./batches";
import { TERMINAL_STATUSES } from "./run-states";

/**
 * Upper edges of the completion → callback latency buckets, in ms: bucket 0 is [0, 10), bucket k is
 * [LATENCY_EDGES_MS[k-1], LATENCY_EDGES_MS[k]), the last bucket is ≥ the last edge. round(10 × 2^(k/2)):
 * the migration's triggers use these same numbers (test/worker/overview-rollup.test.ts checks it).
 */
export const LATENCY_EDGES_MS: readonly number[] = Array.from({ length: 47 }, (_, k) =>
  Math.round(10 * 2 ** (k / 2)),
);
export const LATENCY_BUCKETS = LATENCY_EDGES_MS.length + 1;

export type RunOutcome = (typeof TERMINAL_STATUSES)[number];
export const DELIVERY_OUTCOMES = ["first_try", "retried", "dead"] as const;
export type DeliveryOutcome = (typeof DELIVERY_OUTCOMES)[number];

/** One hour of one key, or of every key summed (the admin's view). */
export interface OverviewHour {
  /** UTC, `YYYY-MM-DDTHH`. */
  hour: string;
  runs: Record<RunOutcome, number>;
  deliveries: Record<DeliveryOutcome, number>;
  /** Succeeded deliveries by latency bucket (LATENCY_EDGES_MS). */
  latency: number[];
}

const latencyColumn = (k: number) => `latency_${String(k).padStart(2, "0")}`;
const RUN_COLUMNS = TERMINAL_STATUSES.map((s) => `runs_${s}`);
const DELIVERY_COLUMNS = DELIVERY_OUTCOMES.map((o) => `deliveries_${o}`);
const LATENCY_COLUMNS = Array.from({ length: LATENCY_BUCKETS }, (_, k) => latencyColumn(k));
const SUMS = [...RUN_COLUMNS, ...DELIVERY_COLUMNS, ...LATENCY_COLUMNS]
  .map((c) => `SUM(${c}) AS ${c}`)
  .join(", ");

/**
 * The hours from `fromHour` on (inclusive), oldest first: one key's, or (apiKeyId null) every key's
 * summed. Reads one row per key and hour with something in it: the primary key's range for a key;
 * for every key, the same range once per key (the IN list lets SQLite seek each key's range rather
 * than scan the table's whole history).
 */
export async function listOverviewHours(
  db: D1Database,
  query: { apiKeyId: string | null; fromHour: string },
): Promise<OverviewHour[]> {
  const statement =
    query.apiKeyId === null
      ? db
          .prepare(
            `SELECT hour, ${SUMS} FROM overview_hours
             WHERE api_key_id IN (SELECT id FROM api_keys) AND hour >= ? GROUP BY hour ORDER BY hour`,
          )
          .bind(query.fromHour)
      : db
          .prepare(
            `SELECT hour, ${SUMS} FROM overview_hours WHERE api_key_id = ? AND hour >= ? GROUP BY hour ORDER BY hour`,
          )
          .bind(query.apiKeyId, query.fromHour);
  const { results } = await statement.all<Record<string, number | string>>();
  return results.map((row) => ({
    hour: String(row.hour),
    runs: Object.fromEntries(TERMINAL_STATUSES.map((s) => [s, Number(row[`runs_${s}`] ?? 0)])) as Record<
      RunOutcome,
      number
    >,
    deliveries: Object.fromEntries(
      DELIVERY_OUTCOMES.map((o) => [o, Number(row[`deliveries_${o}`] ?? 0)]),
    ) as Record<DeliveryOutcome, number>,
    latency: LATENCY_COLUMNS.map((c) => Number(row[c] ?? 0)),
  }));
}

/** What the overview shows of a schedule: enough to say when it runs next and link to it. */
export interface UpcomingSchedule {
  id: string;
  api_key_id: string;
  name: string;
  cron: string;
  timezone: string;
  next_run_at: string;
}

/**
 * The enabled schedules that fire soonest. Every key's: the `schedules_due` index in time order, so
 * `limit` rows. One key's: its schedules (`schedules_by_owner`), as many as the key has.
 */
export async function listUpcomingSchedules(
  db: D1Database,
  query: { apiKeyId: string | null; limit: number },
): Promise<UpcomingSchedule[]> {
  const columns = "id, api_key_id, name, cron, timezone, next_run_at";
  const due = "enabled = 1 AND next_run_at IS NOT NULL";
  const statement =
    query.apiKeyId === null
      ? db
          .prepare(`SELECT ${columns} FROM schedules WHERE ${due} ORDER BY next_run_at LIMIT ?`)
          .bind(query.limit)
      : db
          .prepare(
            `SELECT ${columns} FROM schedules WHERE api_key_id = ? AND ${due} ORDER BY next_run_at LIMIT ?`,
          )
          .bind(query.apiKeyId, query.limit);
  return (await statement.all<UpcomingSchedule>()).results;
}

/** A batch that is not finished, as the overview lists it. */
export interface OpenBatch {
  id: string;
  api_key_id: string;
  name: string | null;
  status: string;
  input_count: number;
  created_at: string;
  /** Runs by status (db/batches.ts Batch.status_counts). */
  counts: Record<string, number>;
}

/** How far back the overview looks for open batches: the newest this many batches (of a key, or all). */
export const OPEN_BATCH_LOOKBACK = 100;

/**
 * Unfinished batches, newest first, among the newest OPEN_BATCH_LOOKBACK (so the read stays bounded
 * however many batches have finished before).
 */
export async function listOpenBatches(
  db: D1Database,
  query: { apiKeyId: string | null; limit: number },
): Promise<OpenBatch[]> {
  const recent =
    query.apiKeyId === null
      ? db
          .prepare(
            `SELECT id, api_key_id, name, status, input_count, created_at, status_counts FROM
               (SELECT * FROM batches ORDER BY id DESC LIMIT ?)
             WHERE status NOT IN ('completed', 'cancelled') LIMIT ?`,
          )
          .bind(OPEN_BATCH_LOOKBACK, query.limit)
      : db
          .prepare(
            `SELECT id, api_key_id, name, status, input_count, created_at, status_counts FROM
               (SELECT * FROM batches WHERE api_key_id = ? ORDER BY id DESC LIMIT ?)
             WHERE status NOT IN ('completed', 'cancelled') LIMIT ?`,
          )
          .bind(query.apiKeyId, OPEN_BATCH_LOOKBACK, query.limit);
  const { results } = await recent.all<Omit<OpenBatch, "counts"> & { status_counts: string }>();
  return results.map(({ status_counts, ...batch }) => ({
    ...batch,
    counts: parseStatusCounts(status_counts),
  }));
}
