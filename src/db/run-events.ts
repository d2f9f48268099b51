// run_events: a run's timeline. Written next to the state change it explains, in the same batch.
import { pageStatement } from "./page";

export type RunEventKind =
  | "stored"
  | "submitted"
  | "submit_retry_scheduled"
  | "submit_failed"
  | "rejected"
  | "matched_by_metadata"
  | "webhook_received"
  | "polled"
  | "status_changed"
  | "result_fetched"
  | "result_fetch_retry_scheduled"
  | "expired"
  | "delivery_created"
  | "delivery_attempted"
  | "delivery_succeeded"
  | "delivery_dead"
  | "delivery_retried";

export interface RunEvent {
  at: string;
  kind: RunEventKind;
  detail: Record<string, unknown> | null;
}

export function insertRunEvent(
  db: D1Database,
  runId: string,
  at: string,
  kind: RunEventKind,
  detail: Record<string, unknown> | null = null,
): D1PreparedStatement {
  return db
    .prepare("INSERT INTO run_events (run_id, at, kind, detail) VALUES (?, ?, ?, ?)")
    .bind(runId, at, kind, detail ? JSON.stringify(detail) : null);
}

/**
 * The event, inserted only if the statement just before it in the same batch changed a row (so a
 * step that lost its race, or a repeated webhook, leaves no trace on the timeline).
 */
export function insertRunEventIfChanged(
  db: D1Database,
  runId: string,
  at: string,
  kind: RunEventKind,
  detail: Record<string, unknown> | null = null,
): D1PreparedStatement {
  return db
    .prepare("INSERT INTO run_events (run_id, at, kind, detail) SELECT ?, ?, ?, ? WHERE changes() > 0")
    .bind(runId, at, kind, detail ? JSON.stringify(detail) : null);
}

/** Oldest first, from above `afterId`, one row more than the page (see db/page.ts). */
export async function listRunEvents(
  db: D1Database,
  runId: string,
  page: { afterId: number; limit: number },
): Promise<Array<RunEvent & { id: number }>> {
  const { results } = await pageStatement(db, "run_events", {
    filters: { run_id: runId },
    afterId: page.afterId,
    limit: page.limit,
    columns: ["id", "at", "kind", "detail"],
  }).all<{ id: number; at: string; kind: RunEventKind; detail: string | null }>();
  return results.map((r) => ({
    id: r.id,
    at: r.at,
    kind: r.kind,
    detail: r.detail ? JSON.parse(r.detail) : null,
  }));
}
