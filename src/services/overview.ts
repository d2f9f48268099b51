// The dashboard's overview: how a key's runs, callbacks, schedules, batches and spend are doing over the
// last 24 hours or 7 days. Every figure comes from the hourly rollup (db/overview.ts, migration 0017)
// and a few bounded reads, so the page costs the same whatever the history holds.
import {
  DELIVERY_OUTCOMES,
  type DeliveryOutcome,
  LATENCY_BUCKETS,
  LATENCY_EDGES_MS,
  listOpenBatches,
  listOverviewHours,
  listUpcomingSchedules,
  type OpenBatch,
  type OverviewHour,
  type RunOutcome,
} from "../db/overview";
import { TERMINAL_STATUSES } from "../db/run-states";
import type { ServiceContext } from "./context";
import { readSpend, type SpendReport } from "./overview-spend";
import { nextOccurrences } from "./schedule-times";
import type { Viewer } from "./viewer";

export const OVERVIEW_RANGES = { "24h": 24, "7d": 168 } as const;
export type OverviewRange = keyof typeof OVERVIEW_RANGES;

/** How many upcoming schedule runs and open batches the overview lists. */
export const UPCOMING_RUNS = 10;
export const OPEN_BATCHES = 5;

export interface LatencyPoint {
  /** Succeeded first-series deliveries in the hour. */
  count: number;
  p50_ms: number;
  p95_ms: number;
}

export interface Overview {
  range: OverviewRange;
  /** Every hour of the window, oldest first, zeros where nothing happened (`YYYY-MM-DDTHH`). */
  hours: OverviewHour[];
  /** Per hour, null where no callback succeeded. */
  latency: Array<LatencyPoint | null>;
  upcoming: Array<{ schedule_id: string; api_key_id: string; name: string; at: string; timezone: string }>;
  batches: OpenBatch[];
  /** Null until spend is recorded (services/overview-spend.ts). */
  spend: SpendReport;
}

const HOUR_MS = 3_600_000;
export const hourOf = (at: Date) => at.toISOString().slice(0, 13);

/** The window's hours, oldest first, ending with the current one. */
export function windowHours(now: Date, range: OverviewRange): string[] {
  const count = OVERVIEW_RANGES[range];
  const current = Math.floor(now.getTime() / HOUR_MS) * HOUR_MS;
  return Array.from({ length: count }, (_, i) => hourOf(new Date(current - (count - 1 - i) * HOUR_MS)));
}

const zeroHour = (hour: string): OverviewHour => ({
  hour,
  runs: Object.fromEntries(TERMINAL_STATUSES.map((s) => [s, 0])) as Record<RunOutcome, number>,
  deliveries: Object.fromEntries(DELIVERY_OUTCOMES.map((o) => [o, 0])) as Record<DeliveryOutcome, number>,
  latency: new Array<number>(LATENCY_BUCKETS).fill(0),
});

/**
 * The q-quantile (0 < q ≤ 1) of a latency histogram, null when it is empty. The bucket holding that
 * rank is found exactly; inside it the value is interpolated geometrically (linearly in the first
 * bucket, which starts at 0). The true quantile lies in the same bucket, so the answer is off by a
 * factor of at most √2 (the buckets' ratio); in the last, open bucket it is that bucket's lower edge.
 */
export function histogramQuantile(buckets: readonly number[], q: number): number | null {
  const total = buckets.reduce((sum, n) => sum + n, 0);
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(q * total));
  let below = 0;
  for (let k = 0; k < buckets.length; k++) {
    const n = buckets[k] ?? 0;
    if (n > 0 && below + n >= rank) {
      const fraction = (rank - below) / n;
      const low = k === 0 ? 0 : (LATENCY_EDGES_MS[k - 1] as number);
      const high = LATENCY_EDGES_MS[k];
      if (high === undefined) return low;
      return k === 0 ? high * fraction : low * (high / low) ** fraction;
    }
    below += n;
  }
  return null;
}

/** Whose figures: a key sees its own; the admin every key's, or one key's with `keyId`. */
function ownerFor(viewer: Viewer, keyId: string | undefined): string | null {
  if (viewer.kind === "key") return viewer.apiKeyId;
  return keyId ?? null;
}

export async function getOverview(
  ctx: ServiceContext,
  viewer: Viewer,
  query: { range: OverviewRange; keyId?: string | undefined },
): Promise<Overview> {
  const now = ctx.now();
  const apiKeyId = ownerFor(viewer, query.keyId);
  const window = windowHours(now, query.range);
  const [stored, schedules, open, spend] = await Promise.all([
    listOverviewHours(ctx.db, { apiKeyId, fromHour: window[0] as string }),
    listUpcomingSchedules(ctx.db, { apiKeyId, limit: UPCOMING_RUNS }),
    listOpenBatches(ctx.db, { apiKeyId, limit: OPEN_BATCHES }),
    readSpend(ctx, { apiKeyId, now }),
  ]);
  const byHour = new Map(stored.map((h) => [h.hour, h]));
  const hours = window.map((hour) => byHour.get(hour) ?? zeroHour(hour));
  const latency = hours.map((h): LatencyPoint | null => {
    const count = h.latency.reduce((sum, n) => sum + n, 0);
    const p50 = histogramQuantile(h.latency, 0.5);
    const p95 = histogramQuantile(h.latency, 0.95);
    return p50 === null || p95 === null ? null : { count, p50_ms: p50, p95_ms: p95 };
  });
  return { range: query.range, hours, latency, upcoming: upcomingRuns(schedules, now), batches: open, spend };
}

/** The next UPCOMING_RUNS fire times across the schedules that fire soonest, in time order. */
function upcomingRuns(
  schedules: Awaited<ReturnType<typeof listUpcomingSchedules>>,
  now: Date,
): Overview["upcoming"] {
  const runs = schedules.flatMap((s) => {
    const first = new Date(s.next_run_at);
    // A schedule due now (the tick has not fired it yet) still shows at its due time.
    const later = nextOccurrences(s.cron, s.timezone, first < now ? now : first, UPCOMING_RUNS - 1);
    return [first, ...later].map((at) => ({
      schedule_id: s.id,
      api_key_id: s.api_key_id,
      name: s.name,
      at: at.toISOString(),
      timezone: s.timezone,
    }));
  });
  return runs.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0)).slice(0, UPCOMING_RUNS);
}
