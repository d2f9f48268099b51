// deliveries and delivery_attempts: callbacks to the user's URL, one per run and event, and every
// attempt at sending one. Changes are conditional updates (a lease, a status) so that racing
// workers never send the same attempt twice.
import { DISPATCHED, dispatchClaimSet, type HeldRow, releaseHeld, TAKEN_SET } from "./dispatch";
import { pageStatement } from "./page";
import { appendRunEventsIfChanged, type RunEventKind, runEvent } from "./run-events";
import { clearFinishDueSet, type Run } from "./runs";

export const DELIVERY_EVENTS = ["run.completed", "run.failed", "batch.completed"] as const;
/** The events of a run's own delivery (a batch's names its first run: db/batch-results.ts). */
export type DeliveryRunEventName = "run.completed" | "run.failed";
export const DELIVERY_STATUSES = ["pending", "succeeded", "dead"] as const;

export type DeliveryEvent = (typeof DELIVERY_EVENTS)[number];
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

export interface Delivery {
  id: string;
  run_id: string;
  api_key_id: string;
  event: DeliveryEvent;
  url: string;
  status: DeliveryStatus;
  series: number;
  attempt_count: number;
  next_attempt_at: string | null;
  lease_until: string | null;
  last_attempt_at: string | null;
  last_status_code: number | null;
  last_error: string | null;
  created_at: string;
  updated_at: string;
  /** A batch.completed delivery's batch (migration 0019); null for a run's own delivery. */
  batch_id?: string | null;
}

export interface DeliveryAttempt {
  delivery_id: string;
  series: number;
  attempt: number;
  attempted_at: string;
  status_code: number | null;
  latency_ms: number;
  error: string | null;
}

/** A timeline event written in the same batch as the delivery change it explains. */
export interface DeliveryRunEvent {
  kind: RunEventKind;
  detail: Record<string, unknown>;
}

/** Appended to the run's timeline only when the statement before them changed a row: events follow their change. */
const runEvents = (
  db: D1Database,
  runId: string,
  at: string,
  events: readonly DeliveryRunEvent[],
  also?: { sql: string; params: unknown[] },
) =>
  appendRunEventsIfChanged(
    db,
    runId,
    events.map((e) => runEvent(at, e.kind, e.detail)),
    also,
  );

/**
 * The INSERT of a delivery, unless the run already has one for this event (it returns the delivery
 * only when created). `afterChange`: only if the statement just before it in the same batch changed
 * a row (the write that stores a run's result and finishes it: services/run-finished.ts).
 */
export function insertDeliveryStatement(
  db: D1Database,
  delivery: Delivery,
  afterChange = false,
): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO deliveries (id, run_id, api_key_id, event, url, status, series, attempt_count,
         next_attempt_at, lease_until, last_attempt_at, last_status_code, last_error, created_at, updated_at)
       SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE ${afterChange ? "changes() > 0" : "true"}
       ON CONFLICT (run_id, event) DO NOTHING
       RETURNING *`,
    )
    .bind(
      delivery.id,
      delivery.run_id,
      delivery.api_key_id,
      delivery.event,
      delivery.url,
      delivery.status,
      delivery.series,
      delivery.attempt_count,
      delivery.next_attempt_at,
      delivery.lease_until,
      delivery.last_attempt_at,
      delivery.last_status_code,
      delivery.last_error,
      delivery.created_at,
      delivery.updated_at,
    );
}

/**
 * Creates the delivery unless the run already has one for this event; returns it only when created.
 * With `finishing`, the same write of the run that records the creation also marks the run's
 * finishing done (clearFinishDue), so the caller need not.
 */
export async function insertDelivery(
  db: D1Database,
  delivery: Delivery,
  event: DeliveryRunEvent,
  finishing?: Pick<Run, "status">,
): Promise<Delivery | null> {
  const [inserted] = await db.batch<Delivery>([
    insertDeliveryStatement(db, delivery),
    ...runEvents(
      db,
      delivery.run_id,
      delivery.created_at,
      [event],
      finishing ? clearFinishDueSet(finishing) : undefined,
    ),
  ]);
  return inserted?.results[0] ?? null;
}

export function findDelivery(db: D1Database, id: string): Promise<Delivery | null> {
  return db.prepare("SELECT * FROM deliveries WHERE id = ?").bind(id).first<Delivery>();
}

/** A key's own delivery; another key's delivery is not found, exactly as an unknown id. */
export function findOwnedDelivery(db: D1Database, apiKeyId: string, id: string): Promise<Delivery | null> {
  return db
    .prepare("SELECT * FROM deliveries WHERE id = ? AND api_key_id = ?")
    .bind(id, apiKeyId)
    .first<Delivery>();
}

const CLAIMABLE =
  "status = 'pending' AND next_attempt_at <= ?1 AND (lease_until IS NULL OR lease_until <= ?1)";

/**
 * Takes the lease on up to `limit` due deliveries, due first, in one statement (so two sweepers
 * never take the same row).
 */
export async function claimDueDeliveries(
  db: D1Database,
  now: string,
  leaseUntil: string,
  limit: number,
): Promise<Delivery[]> {
  const { results } = await db
    .prepare(
      `UPDATE deliveries SET ${dispatchClaimSet({ lease: "?2", now: "?1" })}, updated_at = ?1
       WHERE id IN (SELECT id FROM deliveries WHERE ${CLAIMABLE} ORDER BY next_attempt_at LIMIT ?3)
         AND ${CLAIMABLE}
       RETURNING *`,
    )
    .bind(now, leaseUntil, limit)
    .all<Delivery>();
  return results.sort((a, b) => (a.next_attempt_at ?? "").localeCompare(b.next_attempt_at ?? ""));
}

/**
 * Takes the lease on one delivery: when it is due and free, or due and still the cron tick's (no
 * consumer took it since it was handed out: db/dispatch.ts), or when the caller already holds the
 * lease (`heldLease`) and continues its own series without waiting for the clock.
 */
export function claimDelivery(
  db: D1Database,
  id: string,
  now: string,
  leaseUntil: string,
  heldLease?: string,
): Promise<Delivery | null> {
  const owned = heldLease ? " OR (status = 'pending' AND lease_until = ?4)" : "";
  return db
    .prepare(
      `UPDATE deliveries SET lease_until = ?2, updated_at = ?1, ${TAKEN_SET}
       WHERE id = ?3 AND ((${CLAIMABLE}) OR (status = 'pending' AND next_attempt_at <= ?1 AND ${DISPATCHED})${owned})
       RETURNING *`,
    )
    .bind(now, leaseUntil, id, ...(heldLease ? [heldLease] : []))
    .first<Delivery>();
}

/**
 * Gives deliveries back, free from `at` (db/dispatch.ts releaseSql). Their attempt time stays: a
 * delivery whose attempt was recorded is held for its own next attempt, not given back.
 */
export function releaseDeliveries(db: D1Database, held: readonly HeldRow[], at: string, latest: string) {
  return releaseHeld(db, { table: "deliveries", dispatch: true }, held, at, latest);
}

export type AttemptOutcome = Pick<
  Delivery,
  "status" | "next_attempt_at" | "lease_until" | "last_status_code" | "last_error"
>;

/**
 * Records one attempt and the delivery's new state, guarded by the lease the attempt was made under.
 * Returns the updated delivery, or null when the lease was lost (nothing is written then).
 */
export async function recordAttempt(
  db: D1Database,
  claimed: Delivery,
  at: string,
  attempt: DeliveryAttempt | null,
  outcome: AttemptOutcome,
  events: DeliveryRunEvent[],
): Promise<Delivery | null> {
  const statements = [
    db
      .prepare(
        `UPDATE deliveries SET status = ?, next_attempt_at = ?, lease_until = ?, last_status_code = ?,
           last_error = ?, attempt_count = ?, last_attempt_at = COALESCE(?, last_attempt_at), updated_at = ?
         WHERE id = ? AND lease_until = ? AND attempt_count = ? AND series = ?
         RETURNING *`,
      )
      .bind(
        outcome.status,
        outcome.next_attempt_at,
        outcome.lease_until,
        outcome.last_status_code,
        outcome.last_error,
        attempt ? attempt.attempt : claimed.attempt_count,
        attempt?.attempted_at ?? null,
        at,
        claimed.id,
        claimed.lease_until,
        claimed.attempt_count,
        claimed.series,
      ),
  ];
  if (attempt) {
    // The attempt's timeline events ride in its row, placed after the run's events so far
    // (timeline_after; db/run-events.ts reads them back): no write of the run for an attempt.
    statements.push(
      db
        .prepare(
          `INSERT INTO delivery_attempts (delivery_id, series, attempt, attempted_at, status_code, latency_ms, error,
             events, timeline_after)
           SELECT ?, ?, ?, ?, ?, ?, ?, ?, (SELECT timeline_count FROM runs WHERE id = ?) WHERE changes() > 0`,
        )
        .bind(
          attempt.delivery_id,
          attempt.series,
          attempt.attempt,
          attempt.attempted_at,
          attempt.status_code,
          attempt.latency_ms,
          attempt.error,
          events.length > 0 ? JSON.stringify(events.map((e) => runEvent(at, e.kind, e.detail))) : null,
          claimed.run_id,
        ),
    );
  } else if (events.length > 0) {
    // No attempt was made (the delivery given up before one): its events go to the run's row.
    statements.push(...runEvents(db, claimed.run_id, at, events));
  }
  const [updated] = await db.batch<Delivery>(statements);
  return updated?.results[0] ?? null;
}

/** A finished delivery starts a new series: same id (webhook-id), attempts counted from zero. */
export async function restartDelivery(
  db: D1Database,
  delivery: Delivery,
  now: string,
  event: DeliveryRunEvent,
): Promise<Delivery | null> {
  const [restarted] = await db.batch<Delivery>([
    db
      .prepare(
        `UPDATE deliveries SET status = 'pending', series = series + 1, attempt_count = 0, next_attempt_at = ?1,
           lease_until = NULL, updated_at = ?1
         WHERE id = ?2 AND status IN ('succeeded', 'dead')
         RETURNING *`,
      )
      .bind(now, delivery.id),
    ...runEvents(db, delivery.run_id, now, [event]),
  ]);
  return restarted?.results[0] ?? null;
}

/**
 * "Retry now" for a pending delivery waiting for its next attempt: the attempt is due now, and the
 * caller takes the lease to send it (same series). Null when an attempt is being sent right now
 * (the lease is held) or the delivery is no longer pending.
 */
export async function claimDeliveryNow(
  db: D1Database,
  delivery: Delivery,
  now: string,
  leaseUntil: string,
  event: DeliveryRunEvent,
): Promise<Delivery | null> {
  const [claimed] = await db.batch<Delivery>([
    db
      .prepare(
        `UPDATE deliveries SET next_attempt_at = ?1, lease_until = ?2, updated_at = ?1
         WHERE id = ?3 AND status = 'pending' AND (lease_until IS NULL OR lease_until <= ?1)
         RETURNING *`,
      )
      .bind(now, leaseUntil, delivery.id),
    ...runEvents(db, delivery.run_id, now, [event]),
  ]);
  return claimed?.results[0] ?? null;
}

export async function listRunDeliveries(db: D1Database, runId: string): Promise<Delivery[]> {
  const { results } = await db
    .prepare("SELECT * FROM deliveries WHERE run_id = ? ORDER BY id")
    .bind(runId)
    .all<Delivery>();
  return results;
}

export interface DeliveryListQuery {
  /** The owning key; null: every key's deliveries (the admin's dashboard). */
  apiKeyId: string | null;
  status?: DeliveryStatus | undefined;
  /** Only deliveries with an id below this one (older): the cursor of the previous page. */
  beforeId?: string | undefined;
  limit: number;
}

/** Newest first; one row more than the page, so the caller knows whether a next page exists. */
export async function listDeliveries(db: D1Database, query: DeliveryListQuery): Promise<Delivery[]> {
  const filters = { api_key_id: query.apiKeyId, status: query.status };
  const { results } = await pageStatement(db, "deliveries", {
    filters,
    beforeId: query.beforeId,
    limit: query.limit,
  }).all<Delivery>();
  return results;
}

/** An attempt's place in its delivery as one integer (the attempts cursor): series, then attempt. */
const ATTEMPT_KEY_SPAN = 1_000_000;

/**
 * A delivery's attempts, oldest first from above `afterId` (an attempt's id is its series and attempt
 * as one integer, see ATTEMPT_KEY_SPAN), one row more than the page. Reads the primary key's range.
 */
export async function listAttempts(
  db: D1Database,
  deliveryId: string,
  page: { afterId: number; limit: number },
): Promise<Array<DeliveryAttempt & { id: number }>> {
  const { results } = await db
    .prepare(
      `SELECT delivery_id, series, attempt, attempted_at, status_code, latency_ms, error FROM delivery_attempts
       WHERE delivery_id = ? AND (series, attempt) > (?, ?) ORDER BY series, attempt LIMIT ?`,
    )
    .bind(
      deliveryId,
      Math.floor(page.afterId / ATTEMPT_KEY_SPAN),
      page.afterId % ATTEMPT_KEY_SPAN,
      page.limit + 1,
    )
    .all<DeliveryAttempt>();
  return results.map((a) => ({ ...a, id: a.series * ATTEMPT_KEY_SPAN + a.attempt }));
}
