// What a run costs: one price per processor, per run (Parallel prices runs, not fields). The table
// is Parallel's pricing page as it read on PRICES_TAKEN_AT (the figures live with the processor
// catalogue, parallel/processors.ts); PARALLEL_PRICES overrides entries because prices change.
import type { Config } from "../env";
import { PROCESSORS } from "../parallel/processors";

/** Where the default prices come from, and the date of the copy they were taken from. */
export const PRICES_SOURCE = "https://docs.parallel.ai/getting-started/pricing";
export const PRICES_TAKEN_AT = "2026-05-02";

/** Amounts are kept as integer micro-dollars, so sums of $0.005 stay exact. */
export const MICRO_USD_PER_USD = 1_000_000;

export const usdToMicro = (usd: number): number => Math.round(usd * MICRO_USD_PER_USD);
export const microToUsd = (micro: number): number => micro / MICRO_USD_PER_USD;

export const FAST_SUFFIX = "-fast";

export interface PriceEntry {
  processor: string;
  usd_per_1000_runs: number;
  /** "default" (Parallel's page on PRICES_TAKEN_AT) or "PARALLEL_PRICES" (overridden). */
  source: "default" | "PARALLEL_PRICES";
}

/**
 * USD per 1,000 runs for every known processor. An override of a standard processor prices its
 * `-fast` variant too ("Fast processors have the same pricing as their standard counterparts"),
 * unless the override names the variant itself.
 */
export function priceTable(config: Pick<Config, "PARALLEL_PRICES">): Map<string, PriceEntry> {
  const overrides = config.PARALLEL_PRICES ?? {};
  const table = new Map<string, PriceEntry>();
  for (const processor of PROCESSORS.values()) {
    const standardName = processor.name.endsWith(FAST_SUFFIX)
      ? processor.name.slice(0, -FAST_SUFFIX.length)
      : processor.name;
    const override = overrides[processor.name] ?? overrides[standardName];
    table.set(processor.name, {
      processor: processor.name,
      usd_per_1000_runs: override ?? processor.usdPer1000Runs,
      source: override === undefined ? "default" : "PARALLEL_PRICES",
    });
  }
  return table;
}

const cache = new WeakMap<object, Map<string, PriceEntry>>();

/** The price of one run on `processor`, in micro-dollars; 0 for a processor not in the table. */
export function runPriceMicro(config: Pick<Config, "PARALLEL_PRICES">, processor: string): number {
  let table = cache.get(config);
  if (!table) {
    table = priceTable(config);
    cache.set(config, table);
  }
  const entry = table.get(processor);
  // usd_per_1000_runs / 1000 USD per run, in micro-dollars.
  return entry ? Math.round(entry.usd_per_1000_runs * 1000) : 0;
}
