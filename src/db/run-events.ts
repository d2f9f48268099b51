// A run's timeline. It lives in the run's row (migration 0015): `runs.timeline`, a JSON array of
// {at, kind, detail} oldest first, and `runs.timeline_count`, how many events the run has. A step's
// events are appended by the same UPDATE that makes the step, so they cost D1 no row of their own and
// are written exactly when the step's guard holds. Past TIMELINE_INLINE_MAX events a run's further
// events go to run_events rows instead (a delivery retried by hand without end must not grow the row
// past D1's 2 MB); the timeline is the inline events, then those rows. A delivery attempt's events
// are in its delivery_attempts row instead (migration 0020), placed back among the run's on reading.

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
 * The SET part of a runs UPDATE that appends one event built per row in SQL: `eventSql` is a
 * json_object(…) over the row's columns and bound values (a bulk UPDATE whose runs' events differ, or
 * whose run is chosen in SQL). As timelineSet, the event goes into the row while the run has room;
 * past TIMELINE_INLINE_MAX it is only counted, and the statement's caller inserts it as a run_events
 * row for the runs where `timeline_count > TIMELINE_INLINE_MAX` afterwards.
 */
export function timelineAppendSql(eventSql: string): string {
  return (
    `timeline = CASE WHEN timeline_count + 1 <= ${TIMELINE_INLINE_MAX} ` +
    `THEN json_insert(COALESCE(timeline, '[]'), '$[#]', ${eventSql}) ELSE timeline END, ` +
    "timeline_count = timeline_count + 1"
  );
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

/** A delivery attempt's events, from its row (migration 0020), and where they go in the run's timeline. */
interface AttemptRow {
  /** The run's timeline_count when the attempt was recorded: the events follow that many of the run's. */
  timeline_after: number;
  series: number;
  attempt: number;
  events: string;
}

/**
 * Oldest first, positions above `afterId` (an event's id is its 1-based position in the timeline),
 * one event more than the page so the caller knows whether another follows. Reads the run's row
 * unless its timeline columns are given, then (one D1 call) its run_events rows and its delivery
 * attempts' events.
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
  const [rowsResult, attemptsResult] = await db.batch([
    db.prepare("SELECT at, kind, detail FROM run_events WHERE run_id = ? ORDER BY id").bind(runId),
    db
      .prepare(
        `SELECT a.timeline_after, a.series, a.attempt, a.events
         FROM deliveries d JOIN delivery_attempts a ON a.delivery_id = d.id
         WHERE d.run_id = ? AND a.events IS NOT NULL`,
      )
      .bind(runId),
  ]);
  const rows = (
    (rowsResult?.results ?? []) as Array<{ at: string; kind: RunEventKind; detail: string | null }>
  ).map((r) => ({ at: r.at, kind: r.kind, detail: r.detail ? JSON.parse(r.detail) : null }));
  // The attempts' events go where they were written: after the run's event at timeline_after (in
  // the order they were recorded), so the timeline reads as it did when they were in the run's row.
  const attempts = ((attemptsResult?.results ?? []) as unknown as AttemptRow[])
    .map((a) => ({ ...a, events: JSON.parse(a.events) as RunEvent[] }))
    .sort(
      (a, b) =>
        a.timeline_after - b.timeline_after ||
        (a.events[0]?.at ?? "").localeCompare(b.events[0]?.at ?? "") ||
        a.series - b.series ||
        a.attempt - b.attempt,
    );
  const own: RunEvent[] = [];
  let next = 0;
  for (let position = 0; position <= inline.length; position++) {
    const event = inline[position - 1];
    if (event) own.push(event);
    // Past the row's events (a run past TIMELINE_INLINE_MAX): after them, by time with the overflow below.
    const last = position === inline.length;
    for (; next < attempts.length; next++) {
      const attempt = attempts[next];
      if (!attempt || (!last && attempt.timeline_after > position)) break;
      own.push(...attempt.events);
    }
  }
  // run_events holds the overflow (and, for runs stored before migration 0022's code, a batch run's
  // stored and submitted events): merged with the row's events by time, the row's first on a tie.
  const merged: RunEvent[] = [];
  let i = 0;
  let j = 0;
  while (i < own.length || j < rows.length) {
    const row = rows[j];
    const mine = own[i];
    if (mine && (!row || mine.at <= row.at)) {
      merged.push(mine);
      i++;
    } else if (row) {
      merged.push(row);
      j++;
    }
  }
  const events = merged.slice(page.afterId, page.afterId + wanted);
  const first = Math.max(page.afterId, 0);
  return events.map((e, i) => ({ id: first + i + 1, at: e.at, kind: e.kind, detail: e.detail ?? null }));
}
