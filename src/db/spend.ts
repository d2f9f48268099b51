// Spend (migration 0016): the monthly budget counter on api_keys, and usage_rollup, one row per key,
// UTC day, scope (schedule or batch) and processor, kept as Parallel accepts runs. Amounts are
// integer micro-dollars. Usage reads the rollup, never the runs, so it reads in proportion to the
// days asked for, not to the runs stored.

/** 'YYYY-MM' of a time, in UTC: the budget's month. */
export function monthOf(at: Date | string): string {
  return (typeof at === "string" ? at : at.toISOString()).slice(0, 7);
}

/** Midnight UTC on the first day of the month after `now`: when the month's budget starts over. */
export function monthResetsAt(now: Date): string {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)).toISOString();
}

/** A key's budget columns. */
export interface BudgetRow {
  monthly_budget_micro_usd: number | null;
  budget_month: string | null;
  budget_spent_micro_usd: number;
}

/** What is reserved against the budget in `month`: the counter, if it counts that month. */
export function spentInMonth(row: BudgetRow, month: string): number {
  return row.budget_month === month ? row.budget_spent_micro_usd : 0;
}

export type Reservation =
  /** Reserved against `month`'s budget; `month` is null when the key has no budget (nothing reserved). */
  | { ok: true; month: string | null }
  /** It would pass the budget: nothing was reserved. */
  | { ok: false; month: string; limitMicroUsd: number; spentMicroUsd: number };

/**
 * Reserves `costMicroUsd` against the key's budget for the month of `now`, atomically: one guarded
 * UPDATE that adds the cost only if what is reserved plus the cost stays within the budget, so
 * concurrent requests can never reserve more than the budget between them. A new month starts from
 * 0. A key without a budget reserves nothing (and writes nothing). The batch submission reserves a
 * whole batch's cost with one call; `releaseSpend` gives it back if Parallel does not take it.
 */
export async function reserveSpend(
  db: D1Database,
  keyId: string,
  costMicroUsd: number,
  now: Date,
): Promise<Reservation> {
  const month = monthOf(now);
  const reserved = await db
    .prepare(
      `UPDATE api_keys
       SET budget_spent_micro_usd = (CASE WHEN budget_month = ?1 THEN budget_spent_micro_usd ELSE 0 END) + ?2,
           budget_month = ?1
       WHERE id = ?3 AND monthly_budget_micro_usd IS NOT NULL
         AND (CASE WHEN budget_month = ?1 THEN budget_spent_micro_usd ELSE 0 END) + ?2 <= monthly_budget_micro_usd
       RETURNING budget_spent_micro_usd`,
    )
    .bind(month, costMicroUsd, keyId)
    .first<{ budget_spent_micro_usd: number }>();
  if (reserved) return { ok: true, month };
  const row = await findBudget(db, keyId);
  if (!row || row.monthly_budget_micro_usd === null) return { ok: true, month: null };
  return {
    ok: false,
    month,
    limitMicroUsd: row.monthly_budget_micro_usd,
    spentMicroUsd: spentInMonth(row, month),
  };
}

/** Gives back a reservation of `month` (a no-op once the month has rolled over: it starts from 0). */
export function releaseSpend(
  db: D1Database,
  keyId: string,
  costMicroUsd: number,
  month: string,
): D1PreparedStatement {
  return db
    .prepare(
      `UPDATE api_keys SET budget_spent_micro_usd = MAX(0, budget_spent_micro_usd - ?1)
       WHERE id = ?2 AND budget_month = ?3`,
    )
    .bind(costMicroUsd, keyId, month);
}

/**
 * Releases a run's reservation when Parallel never accepted it. Goes in the batch that records the
 * refusal (or failure), BEFORE its update, with that update's guard: the batch is one transaction,
 * so it releases exactly when the update is about to change a run Parallel does not have.
 */
export function releaseRefusedRunSpend(
  db: D1Database,
  run: { id: string; api_key_id: string; cost_micro_usd?: number; spend_month?: string | null },
  guard: { sql: string },
): D1PreparedStatement[] {
  if (!run.spend_month || !run.cost_micro_usd) return [];
  return [
    db
      .prepare(
        `UPDATE api_keys SET budget_spent_micro_usd = MAX(0, budget_spent_micro_usd - ?1)
         WHERE id = ?2 AND budget_month = ?3
           AND EXISTS (SELECT 1 FROM runs WHERE id = ?4 AND parallel_run_id IS NULL AND (${guard.sql}))`,
      )
      .bind(run.cost_micro_usd, run.api_key_id, run.spend_month, run.id),
  ];
}

const ROLLUP_UPSERT = `ON CONFLICT (api_key_id, day, scope, processor) DO UPDATE
  SET runs = runs + excluded.runs, cost_micro_usd = cost_micro_usd + excluded.cost_micro_usd`;

/**
 * Adds a run Parallel accepted to the rollup: one UPSERT, one row written. It goes in the batch
 * that records the acceptance, BEFORE its update, with that update's guard: it adds the run only
 * while the run has no Parallel run yet and the update is about to give it one, so of a create's
 * answer and a webhook for the same run (a lost create response), only the first counts it.
 */
export function recordAcceptedSpend(
  db: D1Database,
  runId: string,
  at: string,
  guard: { sql: string },
): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO usage_rollup (api_key_id, day, scope, processor, runs, cost_micro_usd)
       SELECT api_key_id, ?, COALESCE(schedule_id, batch_id, ''), processor, 1, cost_micro_usd
       FROM runs WHERE id = ? AND parallel_run_id IS NULL AND (${guard.sql})
       ${ROLLUP_UPSERT}`,
    )
    .bind(at.slice(0, 10), runId);
}

/**
 * Adds a batch's runs with input positions in [fromIndex, toIndex) that Parallel accepted at `at`
 * (an add-runs call's, in the batch that records their acceptance, after it: those it stamped
 * submitted_at = at) to the rollup under the day of `at`: one row written per processor. Runs of
 * the range accepted earlier (a chunk in doubt reconciled in parts, a webhook first) are not
 * counted again.
 */
export function recordAcceptedBatchSpend(
  db: D1Database,
  batchId: string,
  fromIndex: number,
  toIndex: number,
  at: string,
): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO usage_rollup (api_key_id, day, scope, processor, runs, cost_micro_usd)
       SELECT api_key_id, ?, batch_id, processor, COUNT(*), SUM(cost_micro_usd)
       FROM runs WHERE batch_id = ? AND batch_index >= ? AND batch_index < ? AND parallel_run_id IS NOT NULL
         AND submitted_at = ?
       GROUP BY api_key_id, batch_id, processor
       ${ROLLUP_UPSERT}`,
    )
    .bind(at.slice(0, 10), batchId, fromIndex, toIndex, at);
}

export function findBudget(db: D1Database, keyId: string): Promise<BudgetRow | null> {
  return db
    .prepare(
      "SELECT monthly_budget_micro_usd, budget_month, budget_spent_micro_usd FROM api_keys WHERE id = ?",
    )
    .bind(keyId)
    .first<BudgetRow>();
}

/**
 * Sets (or, with null, removes) a key's budget. Setting one mid-month starts the counter from the
 * month's accepted spend in the rollup, unless it already counts this month (the key had a budget).
 */
export function setKeyBudget(
  db: D1Database,
  keyId: string,
  budgetMicroUsd: number | null,
  now: Date,
): D1PreparedStatement {
  const month = monthOf(now);
  return db
    .prepare(
      `UPDATE api_keys SET
         monthly_budget_micro_usd = ?1,
         budget_spent_micro_usd = CASE
           WHEN ?1 IS NULL THEN 0
           WHEN budget_month = ?2 THEN budget_spent_micro_usd
           ELSE (SELECT COALESCE(SUM(cost_micro_usd), 0) FROM usage_rollup
                 WHERE api_key_id = ?3 AND day >= ?4 AND day <= ?5) END,
         budget_month = CASE WHEN ?1 IS NULL THEN NULL ELSE ?2 END
       WHERE id = ?3
       RETURNING *`,
    )
    .bind(budgetMicroUsd, month, keyId, `${month}-01`, `${month}-31`);
}

export const USAGE_GROUPS = ["day", "processor", "schedule", "batch"] as const;
export type UsageGroupBy = (typeof USAGE_GROUPS)[number];

// A run's scope is its schedule id or batch id (prefixed sch_ / bat_), '' for a direct run.
const GROUP_EXPRESSION: Record<UsageGroupBy, string> = {
  day: "day",
  processor: "processor",
  schedule: "CASE WHEN substr(scope, 1, 4) = 'sch_' THEN scope END",
  batch: "CASE WHEN substr(scope, 1, 4) = 'bat_' THEN scope END",
};

export interface UsageGroupRow {
  /** The day, processor, schedule id or batch id; null: runs in no schedule (or batch). */
  group_key: string | null;
  runs: number;
  cost_micro_usd: number;
}

/**
 * Accepted runs and their cost per group, over the days [fromDay, toDay] (YYYY-MM-DD, UTC). Reads
 * only the rollup rows of those days, through the primary key: of one key, or of each key in turn
 * (`apiKeyId` null, the admin: one seek per key).
 */
export async function usageByGroup(
  db: D1Database,
  query: { apiKeyId: string | null; fromDay: string; toDay: string; groupBy: UsageGroupBy },
): Promise<UsageGroupRow[]> {
  const keys = query.apiKeyId === null ? "api_key_id IN (SELECT id FROM api_keys)" : "api_key_id = ?3";
  const expression = GROUP_EXPRESSION[query.groupBy];
  const statement = db.prepare(
    `SELECT ${expression} AS group_key, SUM(runs) AS runs, SUM(cost_micro_usd) AS cost_micro_usd
     FROM usage_rollup WHERE ${keys} AND day >= ?1 AND day <= ?2
     GROUP BY group_key ORDER BY group_key`,
  );
  const bound =
    query.apiKeyId === null
      ? statement.bind(query.fromDay, query.toDay)
      : statement.bind(query.fromDay, query.toDay, query.apiKeyId);
  const { results } = await bound.all<UsageGroupRow>();
  return results;
}

/**
 * Spend per (UTC day, processor) over [fromDay, toDay], oldest first: the overview's chart. Reads the
 * rollup rows of those days only, as usageByGroup does.
 */
export async function spendByDayAndProcessor(
  db: D1Database,
  query: { apiKeyId: string | null; fromDay: string; toDay: string },
): Promise<Array<{ day: string; processor: string; cost_micro_usd: number }>> {
  const keys = query.apiKeyId === null ? "api_key_id IN (SELECT id FROM api_keys)" : "api_key_id = ?3";
  const statement = db.prepare(
    `SELECT day, processor, SUM(cost_micro_usd) AS cost_micro_usd
     FROM usage_rollup WHERE ${keys} AND day >= ?1 AND day <= ?2
     GROUP BY day, processor ORDER BY day, processor`,
  );
  const bound =
    query.apiKeyId === null
      ? statement.bind(query.fromDay, query.toDay)
      : statement.bind(query.fromDay, query.toDay, query.apiKeyId);
  const { results } = await bound.all<{ day: string; processor: string; cost_micro_usd: number }>();
  return results;
}

/** What a key's runs accepted in `month` cost, from the rollup (a budget-less key has no counter). */
export async function monthSpendMicro(db: D1Database, keyId: string, month: string): Promise<number> {
  const row = await db
    .prepare(
      `SELECT COALESCE(SUM(cost_micro_usd), 0) AS spent FROM usage_rollup
       WHERE api_key_id = ? AND day >= ? AND day <= ?`,
    )
    .bind(keyId, `${month}-01`, `${month}-31`)
    .first<{ spent: number }>();
  return row?.spent ?? 0;
}

export interface ScopeSpend {
  runs: number;
  cost_micro_usd: number;
}

/**
 * The accepted runs and cost of one schedule or batch: the key's rollup rows from the day it was
 * created (one per day, scope and processor), never its runs.
 */
export async function scopeSpend(
  db: D1Database,
  scope: { id: string; api_key_id: string; created_at: string },
): Promise<ScopeSpend> {
  const row = await db
    .prepare(
      `SELECT COALESCE(SUM(runs), 0) AS runs, COALESCE(SUM(cost_micro_usd), 0) AS cost_micro_usd
       FROM usage_rollup WHERE api_key_id = ? AND day >= ? AND scope = ?`,
    )
    .bind(scope.api_key_id, scope.created_at.slice(0, 10), scope.id)
    .first<ScopeSpend>();
  return row ?? { runs: 0, cost_micro_usd: 0 };
}

/** A batch's spend (the sum of its accepted runs), for the batch API and dashboard. */
export const batchSpend = scopeSpend;
