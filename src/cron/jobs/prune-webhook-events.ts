// Job 5: forget webhook-ids older than the replay window. Parallel retries a delivery for up to
// about 48 hours, so ids are kept for 72.
import { pruneWebhookEvents } from "../../db/webhook-events";
import type { ServiceContext } from "../../services/context";

export const WEBHOOK_REPLAY_WINDOW_MS = 72 * 60 * 60 * 1000;
const PRUNE_BATCH = 1000;

export async function runPruneWebhookEvents(ctx: ServiceContext, now: Date) {
  const before = new Date(now.getTime() - WEBHOOK_REPLAY_WINDOW_MS).toISOString();
  return { deleted: await pruneWebhookEvents(ctx.db, before, PRUNE_BATCH) };
}
