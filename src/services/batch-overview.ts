// Batches as the dashboard lists them: the viewer's batches (every key's for the admin), newest
// first, each with its runs' counts by status and an estimate of when it will be done.
import { type Batch, rowToBatch } from "../db/batches";
import { pageStatement } from "../db/page";
import { TERMINAL_STATUSES } from "../db/run-states";
import type { ServiceContext } from "./context";
import { beforeIdOf, type PageRequest, toPage } from "./pages";
import type { Viewer } from "./viewer";

export interface BatchOverview {
  batch: Batch;
  /** Runs by status (absent: none), and `total`. */
  counts: Record<string, number>;
  /** Finished runs (terminal statuses) out of `total`. */
  finished: number;
  /** At the pace so far (finished runs since the batch was created): when the rest should be done; null without a pace. */
  etaAt: string | null;
}

/** One page of the viewer's batches with their counts (kept on their rows): one query. */
export async function listBatchOverviews(
  ctx: ServiceContext,
  viewer: Viewer,
  page: PageRequest,
): Promise<{ batches: BatchOverview[]; nextCursor: string | null }> {
  const { results } = await pageStatement(ctx.db, "batches", {
    filters: { api_key_id: viewer.kind === "key" ? viewer.apiKeyId : undefined },
    beforeId: beforeIdOf(page.cursor),
    limit: page.limit,
  }).all<Parameters<typeof rowToBatch>[0]>();
  const { items, nextCursor } = toPage(results, page.limit);
  const batches = items.map(rowToBatch);
  const now = ctx.now();
  return {
    batches: batches.map((batch) => {
      const byStatus = batch.status_counts;
      const total = Object.values(byStatus).reduce((sum, n) => sum + n, 0);
      const finished = TERMINAL_STATUSES.reduce((sum, s) => sum + (byStatus[s] ?? 0), 0);
      return { batch, counts: { total, ...byStatus }, finished, etaAt: eta(batch, total, finished, now) };
    }),
    nextCursor,
  };
}

function eta(batch: Batch, total: number, finished: number, now: Date): string | null {
  if (batch.completed_at || finished === 0 || finished >= total) return null;
  const elapsed = now.getTime() - Date.parse(batch.created_at);
  if (elapsed <= 0) return null;
  const perRun = elapsed / finished;
  return new Date(now.getTime() + perRun * (total - finished)).toISOString();
}
