// The overview's spend section reads through this one function. Spend (runs.cost_usd, the usage rollup,
// budgets) is issue 16's other half, built at the same time: until it lands, readSpend answers null and
// the page says spend is not recorded yet. Wiring it is replacing the body below with a read of that
// rollup — the page renders whatever SpendReport holds and needs no other change.
import type { ServiceContext } from "./context";

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

export async function readSpend(
  _ctx: ServiceContext,
  _query: { apiKeyId: string | null; now: Date },
): Promise<SpendReport | null> {
  return null;
}
