// Spend: what a run costs, the key's monthly budget (checked and reserved before anything is paid),
// and usage per day, processor, schedule or batch from the rollup (db/spend.ts).
import {
  findBudget,
  monthOf,
  monthResetsAt,
  monthSpendMicro,
  type Reservation,
  reserveSpend,
  scopeSpend,
  spentInMonth,
  type UsageGroupBy,
  usageByGroup,
} from "../db/spend";
import { ApiError } from "../errors";
import { microToUsd, runPriceMicro, usdToMicro } from "../pricing/prices";
import type { ServiceContext } from "./context";

/** The key's budget as GET /v1/usage shows it; `limit_usd` and `remaining_usd` are null without one. */
export interface BudgetView {
  limit_usd: number | null;
  spent_usd: number;
  remaining_usd: number | null;
  resets_at: string;
}

export function runCostMicro(ctx: ServiceContext, processor: string): number {
  return runPriceMicro(ctx.config, processor);
}

/** 402 `budget_exceeded`, saying the budget, what is spent, what this would cost and when it resets. */
export function budgetExceeded(
  refusal: Extract<Reservation, { ok: false }>,
  costMicroUsd: number,
  now: Date,
  what = "This run",
): ApiError {
  const limit = microToUsd(refusal.limitMicroUsd);
  const spent = microToUsd(refusal.spentMicroUsd);
  const cost = microToUsd(costMicroUsd);
  const resetsAt = monthResetsAt(now);
  return new ApiError(
    "budget_exceeded",
    `${what} would cost $${cost} and take the key past its monthly budget of $${limit} ($${spent} spent this month); the budget resets at ${resetsAt}.`,
    [
      {
        message: "over the monthly budget",
        limit_usd: limit,
        spent_usd: spent,
        cost_usd: cost,
        remaining_usd: microToUsd(Math.max(0, refusal.limitMicroUsd - refusal.spentMicroUsd)),
        resets_at: resetsAt,
      },
    ],
  );
}

/**
 * Reserves a run's cost against the key's budget, or throws 402 `budget_exceeded`. Returns the
 * month reserved against (null: the key has no budget, nothing reserved).
 */
export async function reserveRunSpend(
  ctx: ServiceContext,
  apiKeyId: string,
  costMicroUsd: number,
): Promise<string | null> {
  const now = ctx.now();
  const reservation = await reserveSpend(ctx.db, apiKeyId, costMicroUsd, now);
  if (!reservation.ok) throw budgetExceeded(reservation, costMicroUsd, now);
  return reservation.month;
}

/**
 * The key's budget this month. With a budget, spent is what is reserved (accepted runs and runs
 * waiting for Parallel); without one, what this month's accepted runs cost (the rollup).
 */
export async function getBudget(ctx: ServiceContext, apiKeyId: string): Promise<BudgetView> {
  const now = ctx.now();
  const month = monthOf(now);
  const row = await findBudget(ctx.db, apiKeyId);
  if (!row) throw new ApiError("not_found", `No API key ${apiKeyId}.`);
  const resetsAt = monthResetsAt(now);
  if (row.monthly_budget_micro_usd === null) {
    const spent = await monthSpendMicro(ctx.db, apiKeyId, month);
    return { limit_usd: null, spent_usd: microToUsd(spent), remaining_usd: null, resets_at: resetsAt };
  }
  const spent = spentInMonth(row, month);
  return {
    limit_usd: microToUsd(row.monthly_budget_micro_usd),
    spent_usd: microToUsd(spent),
    remaining_usd: microToUsd(Math.max(0, row.monthly_budget_micro_usd - spent)),
    resets_at: resetsAt,
  };
}

/** A dry run's budget check: whether `costMicroUsd` more fits the key's budget this month, and the budget. */
export async function budgetCheck(
  ctx: ServiceContext,
  apiKeyId: string,
  costMicroUsd: number,
): Promise<{ budget: BudgetView; check: { check: "budget"; passed: boolean; message: string } }> {
  const budget = await getBudget(ctx, apiKeyId);
  const fits =
    budget.limit_usd === null || usdToMicro(budget.spent_usd) + costMicroUsd <= usdToMicro(budget.limit_usd);
  const message =
    budget.limit_usd === null
      ? "the key has no monthly budget"
      : fits
        ? `fits: $${budget.remaining_usd} of $${budget.limit_usd} left this month`
        : `would pass the monthly budget of $${budget.limit_usd} ($${budget.spent_usd} spent): 402 budget_exceeded`;
  return { budget, check: { check: "budget", passed: fits, message } };
}

export interface UsageQuery {
  /** null: every key (the admin token without key_id). */
  apiKeyId: string | null;
  /** YYYY-MM-DD, inclusive, UTC. */
  from: string;
  to: string;
  groupBy: UsageGroupBy;
}

export interface UsageReport {
  api_key_id: string | null;
  from: string;
  to: string;
  group_by: UsageGroupBy;
  groups: Array<{ key: string | null; runs: number; cost_usd: number }>;
  totals: { runs: number; cost_usd: number };
  budget: BudgetView | null;
}

/** The longest range one usage query covers: it reads at most this many days of rollup rows. */
export const USAGE_MAX_DAYS = 366;

export async function getUsage(ctx: ServiceContext, query: UsageQuery): Promise<UsageReport> {
  const rows = await usageByGroup(ctx.db, {
    apiKeyId: query.apiKeyId,
    fromDay: query.from,
    toDay: query.to,
    groupBy: query.groupBy,
  });
  let runs = 0;
  let cost = 0;
  for (const row of rows) {
    runs += row.runs;
    cost += row.cost_micro_usd;
  }
  return {
    api_key_id: query.apiKeyId,
    from: query.from,
    to: query.to,
    group_by: query.groupBy,
    groups: rows.map((r) => ({ key: r.group_key, runs: r.runs, cost_usd: microToUsd(r.cost_micro_usd) })),
    totals: { runs, cost_usd: microToUsd(cost) },
    budget: query.apiKeyId === null ? null : await getBudget(ctx, query.apiKeyId),
  };
}

/** What a schedule's (or a batch's) accepted runs have cost, from the rollup. */
export async function getScopeSpend(
  ctx: ServiceContext,
  scope: { id: string; api_key_id: string; created_at: string },
): Promise<{ runs: number; cost_usd: number }> {
  const spend = await scopeSpend(ctx.db, scope);
  return { runs: spend.runs, cost_usd: microToUsd(spend.cost_micro_usd) };
}
