// The overview's spend section reads through this one function: the usage rollup (db/spend.ts,
// migration 0016) for the last 30 days by processor, and the key's budget this month.
import { spendByDayAndProcessor } from "../db/spend";
import { microToUsd } from "../pricing/prices";
import type { ServiceContext } from "./context";
import { getBudget } from "./spend";

/** One processor's spend on one UTC day. */
export interface SpendDay {
  /** `YYYY-MM-DD`, UTC. */
  day: string;
  processor: string;
  usd: number;
}

export interface SpendReport {
  /** The last 30 UTC days with any spend, oldest first, one entry per (day, processor). */
  days: SpendDay[];
  /** This calendar month (UTC) against the key's budget; null when no budget applies (every key's view). */
  budget: { limit_usd: number | null; spent_usd: number; resets_at: string } | null;
}

const DAY_MS = 86_400_000;

export async function readSpend(
  ctx: ServiceContext,
  query: { apiKeyId: string | null; now: Date },
): Promise<SpendReport> {
  const toDay = query.now.toISOString().slice(0, 10);
  const fromDay = new Date(query.now.getTime() - 29 * DAY_MS).toISOString().slice(0, 10);
  const rows = await spendByDayAndProcessor(ctx.db, { apiKeyId: query.apiKeyId, fromDay, toDay });
  const days = rows.map((r) => ({ day: r.day, processor: r.processor, usd: microToUsd(r.cost_micro_usd) }));
  if (query.apiKeyId === null) return { days, budget: null };
  const budget = await getBudget(ctx, query.apiKeyId);
  return {
    days,
    budget: { limit_usd: budget.limit_usd, spent_usd: budget.spent_usd, resets_at: budget.resets_at },
  };
}
