// A run's timeline. It lives in the run's row (migration 0015): `runs.timeline`, a JSON array of
// {at, kind, detail} oldest first, and `runs.timeline_count`, how many events the run has. A step's
// events are appended by the same UPDATE that makes the step, so they cost D1 no row of their own and
// are written exactly when the step's guard holds. Past TIMELINE_INLINE_MAX events a run's further
// events go to run_events rows instead (a delivery retried by hand without end must not grow the row
// past D1's 2 MB); the timeline is the inline events, then those rows.

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

/** Events kept in the run's row; a few hundred bytes each, so well inside D1's row limit. */
export const TIMELINE_INLINE_MAX = 200;

export const runEvent = (
  at: string,
  kind: RunEventKind,
  detail: Record<string, unknown> | null = null,
): RunEvent => ({ at, kind, detail });

/**
 * The SET part of a runs UPDATE that appends `events` to the timeline, and its values in order. The
 * events go into the row while the run has room for all of them, else to run_events (the statement
 * of overflowStatement, which must follow the UPDATE in the same batch).
 */
export function timelineSet(events: readonly RunEvent[]): { sql: string; params: string[] } {
  const k = events.length;
  const appends = events.map(() => "'$[#]', json(?)").join(", ");
  return {
    sql:
      `timeline = CASE WHEN timeline_count + ${k} <= ${TIMELINE_INLINE_MAX} ` +
      `THEN json_insert(COALESCE(timeline, '[]'), ${appends}) ELSE timeline END, ` +
      `timeline_count = timeline_count + ${k}`,
    params: events.map((e) => JSON.stringify(e)),
  };
}

/**
 * Right after the UPDATE that counted `events`: inserts them as run_events rows when they did not
 * fit in the row (and only if that UPDATE changed the run). Writes nothing for a run under the limit.
 */
export function overflowStatement(
  db: D1Database,
  runId: string,
  events: readonly RunEvent[],
): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO run_events (run_id, at, kind, detail)
       SELECT ?1, json_extract(value, '$.at'), json_extract(value, '$.kind'), json_extract(value, '$.detail')
       FROM json_each(?2)
       WHERE changes() > 0 AND (SELECT timeline_count FROM runs WHERE id = ?1) > ${TIMELINE_INLINE_MAX}`,
    )
    .bind(runId, JSON.stringify(events));
}

/**
 * Appends events to a run's timeline only if the statement just before these in the same batch
 * changed a row (so a step that lost its race, or a repeated webhook, leaves no trace): an UPDATE of
 * the run (one row written) and its overflow statement.
 */
export function appendRunEventsIfChanged(
  db: D1Database,
  runId: string,
  events: readonly RunEvent[],
  /** More of the run to set in the same UPDATE (SQL written in code, and its values). */
  also?: { sql: string; params: unknown[] },
): [D1PreparedStatement, D1PreparedStatement] {
  const set = timelineSet(events);
  const sets = also ? `${set.sql}, ${also.sql}` : set.sql;
  return [
    db
      .prepare(`UPDATE runs SET ${sets} WHERE id = ? AND changes() > 0`)
      .bind(...set.params, ...(also?.params ?? []), runId),
    overflowStatement(db, runId, events),
  ];
}

/**
 * Appends `event` unless the run's timeline (its row, or run_events past the inline limit) already
 * has an event of its kind with the same `detail[key]`: the webhook's timeline event when its change
 * was not made, recorded once per webhook-id however often the webhook comes.
 */
export function appendRunEventsUnlessRecorded(
  db: D1Database,
  runId: string,
  event: RunEvent,
  key: string,
): [D1PreparedStatement, D1PreparedStatement] {
  const set = timelineSet([event]);
  const value = event.detail?.[key] ?? null;
  const path = `$.detail.${key}`;
  return [
    db
      .prepare(
        `UPDATE runs SET ${set.sql} WHERE id = ?
           AND NOT EXISTS (SELECT 1 FROM json_each(runs.timeline)
             WHERE json_extract(value, '$.kind') = ? AND json_extract(value, ?) = ?)
           AND NOT EXISTS (SELECT 1 FROM run_events
             WHERE run_id = ? AND kind = ? AND json_extract(detail, ?) = ?)`,
      )
      .bind(...set.params, runId, event.kind, path, value, runId, event.kind, `$.${key}`, value),
    overflowStatement(db, runId, [event]),
  ];
}

/** The timeline columns of a run row, as read with the run or on their own. */
export interface TimelineColumns {
  timeline?: string | null;
  timeline_count?: number;
}

/**
 * Oldest first, positions above `afterId` (an event's id is its 1-based position in the timeline),
 * one event more than the page so the caller knows whether another follows. Reads the run's row
 * unless its timeline columns are given, and run_events only for a run past the inline limit.
 */
export async function listRunEvents(
  db: D1Database,
  runId: string,
  page: { afterId: number; limit: number },
  known?: TimelineColumns,
): Promise<Array<RunEvent & { id: number }>> {
  const columns =
    known ??
    (await db
      .prepare("SELECT timeline, timeline_count FROM runs WHERE id = ?")
      .bind(runId)
      .first<TimelineColumns>()) ??
    {};
  const inline = columns.timeline ? (JSON.parse(columns.timeline) as RunEvent[]) : [];
  const wanted = page.limit + 1;
  // run_events holds the overflow and rows other code inserts directly (db/batches.ts: a batch run's
  // stored and submitted events): merged with the row's events by time, the row's first on a tie.
  const { results } = await db
    .prepare("SELECT at, kind, detail FROM run_events WHERE run_id = ? ORDER BY id")
    .bind(runId)
    .all<{ at: string; kind: RunEventKind; detail: string | null }>();
  const rows = results.map((r) => ({
    at: r.at,
    kind: r.kind,
    detail: r.detail ? JSON.parse(r.detail) : null,
  }));
  const merged: RunEvent[] = [];
  let i = 0;
  let j = 0;
  while (i < inline.length || j < rows.length) {
    const next = rows[j];
    const own = inline[i];
    if (own && (!next || own.at <= next.at)) {
      merged.push(own);
      i++;
    } else if (next) {
      merged.push(next);
      j++;
    }
  }
  const events = merged.slice(page.afterId, page.afterId + wanted);
  const first = Math.max(page.afterId, 0);
  return events.map((e, i) => ({ id: first + i + 1, at: e.at, kind: e.kind, detail: e.detail ?? null }));
}
