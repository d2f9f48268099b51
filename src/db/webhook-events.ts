// webhook_events: Parallel's webhook-ids seen, for de-duplication within the replay window.

export function recordWebhookEvent(
  db: D1Database,
  event: {
    webhookId: string;
    parallelRunId: string | null;
    runId: string | null;
    status: string | null;
    receivedAt: string;
  },
): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO webhook_events (webhook_id, parallel_run_id, run_id, status, received_at)
       VALUES (?, ?, ?, ?, ?) ON CONFLICT (webhook_id) DO NOTHING`,
    )
    .bind(event.webhookId, event.parallelRunId, event.runId, event.status, event.receivedAt);
}

/** Deletes at most `limit` ids received before `before`; returns how many. */
export async function pruneWebhookEvents(db: D1Database, before: string, limit: number): Promise<number> {
  const result = await db
    .prepare(
      `DELETE FROM webhook_events WHERE webhook_id IN (
         SELECT webhook_id FROM webhook_events WHERE received_at < ? ORDER BY received_at LIMIT ?)`,
    )
    .bind(before, limit)
    .run();
  return result.meta.changes;
}
