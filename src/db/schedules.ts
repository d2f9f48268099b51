// schedules and schedule_occurrences: recurring run templates, and what each occurrence came to.
import type { RunTemplate } from "../schemas/schedules";
import { DISPATCHED, dispatchClaimSet, type HeldRow, releaseHeld, TAKEN_SET } from "./dispatch";
import { pageStatement } from "./page";

export const OVERLAP_POLICIES = ["skip", "allow"] as const;
export const MISSED_POLICIES = ["run_once", "skip"] as const;
export const NOTIFY_POLICIES = ["always", "on_change"] as const;
export const OCCURRENCE_OUTCOMES = [
  "fired",
  "triggered",
  "skipped_overlap",
  "skipped_missed",
  /** The run would have passed the key's monthly budget (issue 16). */
  "skipped_budget",
  "failed",
] as const;

export type OverlapPolicy = (typeof OVERLAP_POLICIES)[number];
export type MissedPolicy = (typeof MISSED_POLICIES)[number];
export type NotifyPolicy = (typeof NOTIFY_POLICIES)[number];
export type OccurrenceOutcome = (typeof OCCURRENCE_OUTCOMES)[number];

/** A schedule as the code uses it: JSON and flags parsed. Field names are the column names. */
export interface Schedule {
  id: string;
  api_key_id: string;
  name: string;
  cron: string;
  timezone: string;
  template: RunTemplate;
  callback_url: string | null;
  overlap: OverlapPolicy;
  missed: MissedPolicy;
  notify: NotifyPolicy;
  chain_interactions: boolean;
  enabled: boolean;
  next_run_at: string | null;
  lease_until: string | null;
  last_run_id: string | null;
  last_fired_at: string | null;
  last_success_run_id: string | null;
  last_success_at: string | null;
  last_success_interaction_id: string | null;
  last_output_hash: string | null;
  created_at: string;
  updated_at: string;
}

type ScheduleRow = Omit<Schedule, "template" | "chain_interactions" | "enabled"> & {
  template: string;
  chain_interactions: number;
  enabled: number;
};

function rowToSchedule(row: ScheduleRow): Schedule {
  return {
    ...row,
    template: JSON.parse(row.template) as RunTemplate,
    chain_interactions: row.chain_interactions === 1,
    enabled: row.enabled === 1,
  };
}

async function firstSchedule(statement: D1PreparedStatement): Promise<Schedule | null> {
  const row = await statement.first<ScheduleRow>();
  return row ? rowToSchedule(row) : null;
}

async function allSchedules(statement: D1PreparedStatement): Promise<Schedule[]> {
  const { results } = await statement.all<ScheduleRow>();
  return results.map(rowToSchedule);
}

export function insertSchedule(db: D1Database, s: Schedule): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO schedules (id, api_key_id, name, cron, timezone, template, callback_url, overlap, missed, notify,
         chain_interactions, enabled, next_run_at, lease_until, last_run_id, last_fired_at, last_success_run_id,
         last_success_at, last_success_interaction_id, last_output_hash, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    .bind(
      s.id,
      s.api_key_id,
      s.name,
      s.cron,
      s.timezone,
      JSON.stringify(s.template),
      s.callback_url,
      s.overlap,
      s.missed,
      s.notify,
      s.chain_interactions ? 1 : 0,
      s.enabled ? 1 : 0,
      s.next_run_at,
      s.lease_until,
      s.last_run_id,
      s.last_fired_at,
      s.last_success_run_id,
      s.last_success_at,
      s.last_success_interaction_id,
      s.last_output_hash,
      s.created_at,
      s.updated_at,
    );
}

export function findSchedule(db: D1Database, id: string): Promise<Schedule | null> {
  return firstSchedule(db.prepare("SELECT * FROM schedules WHERE id = ?").bind(id));
}

/** A key's own schedule; another key's schedule is not found, exactly as an unknown id. */
export function findOwnedSchedule(db: D1Database, apiKeyId: string, id: string): Promise<Schedule | null> {
  return firstSchedule(
    db.prepare("SELECT * FROM schedules WHERE id = ? AND api_key_id = ?").bind(id, apiKeyId),
  );
}

/** Newest first, one row more than the page (see db/page.ts); apiKeyId null: every key's (the admin's). */
export function listSchedules(
  db: D1Database,
  query: { apiKeyId: string | null; beforeId?: string | undefined; limit: number },
): Promise<Schedule[]> {
  return allSchedules(
    pageStatement(db, "schedules", {
      filters: { api_key_id: query.apiKeyId },
      beforeId: query.beforeId,
      limit: query.limit,
    }),
  );
}

/** What PATCH may change, plus the next fire time it implies. */
export type ScheduleChanges = Partial<
  Pick<
    Schedule,
    | "name"
    | "cron"
    | "timezone"
    | "template"
    | "callback_url"
    | "overlap"
    | "missed"
    | "notify"
    | "chain_interactions"
    | "enabled"
    | "next_run_at"
  >
>;

function columnValue(column: keyof ScheduleChanges, changes: ScheduleChanges): unknown {
  const value = changes[column];
  if (column === "template") return JSON.stringify(value);
  if (typeof value === "boolean") return value ? 1 : 0;
  return value ?? null;
}

export function updateOwnedSchedule(
  db: D1Database,
  apiKeyId: string,
  id: string,
  now: string,
  changes: ScheduleChanges,
): Promise<Schedule | null> {
  const columns = Object.keys(changes) as Array<keyof ScheduleChanges>;
  const sets = [...columns.map((c) => `${c} = ?`), "updated_at = ?"];
  return firstSchedule(
    db
      .prepare(`UPDATE schedules SET ${sets.join(", ")} WHERE id = ? AND api_key_id = ? RETURNING *`)
      .bind(...columns.map((c) => columnValue(c, changes)), now, id, apiKeyId),
  );
}

/** Deletes the schedule and its occurrence log; its runs stay, with their schedule_id. */
export async function deleteOwnedSchedule(db: D1Database, apiKeyId: string, id: string): Promise<boolean> {
  const [deleted] = await db.batch([
    db.prepare("DELETE FROM schedules WHERE id = ? AND api_key_id = ? RETURNING id").bind(id, apiKeyId),
    db.prepare("DELETE FROM schedule_occurrences WHERE schedule_id = ? AND changes() > 0").bind(id),
  ]);
  return (deleted?.results.length ?? 0) > 0;
}

/**
 * Takes up to `limit` due, enabled schedules that no other tick holds, oldest occurrence first, and
 * leases them until `leaseUntil`. One statement, so two ticks never take the same schedule. Reads
 * only the schedules_due index's due entries: paused schedules are not in it, future ones are past
 * the range.
 */
export function claimDueSchedulesStatement(
  db: D1Database,
  now: string,
  leaseUntil: string,
  limit: number,
): D1PreparedStatement {
  const due =
    "enabled = 1 AND next_run_at IS NOT NULL AND next_run_at <= ? AND (lease_until IS NULL OR lease_until <= ?)";
  return db
    .prepare(
      // ?1 and ?2 are the lease and the time; SQLite numbers each later "?" from 3 on.
      `UPDATE schedules SET ${dispatchClaimSet({ lease: "?1", now: "?2" })}
       WHERE id IN (SELECT id FROM schedules WHERE ${due} ORDER BY next_run_at LIMIT ?) AND ${due}
       RETURNING *`,
    )
    .bind(leaseUntil, now, now, now, limit, now, now);
}

export function claimDueSchedules(
  db: D1Database,
  now: string,
  leaseUntil: string,
  limit: number,
): Promise<Schedule[]> {
  return allSchedules(claimDueSchedulesStatement(db, now, leaseUntil, limit));
}

/**
 * Takes one due schedule for the queue message that names it: free, still held under `heldLease`, or
 * still the cron tick's (no consumer took it since it was handed out: db/dispatch.ts).
 */
export function takeDueSchedule(
  db: D1Database,
  id: string,
  now: string,
  leaseUntil: string,
  heldLease: string,
): Promise<Schedule | null> {
  return allSchedules(
    db
      .prepare(
        `UPDATE schedules SET lease_until = ?, ${TAKEN_SET}
         WHERE id = ? AND enabled = 1 AND next_run_at IS NOT NULL AND next_run_at <= ?
           AND (lease_until IS NULL OR lease_until <= ? OR lease_until = ? OR ${DISPATCHED})
         RETURNING *`,
      )
      .bind(leaseUntil, id, now, now, heldLease),
  ).then((rows) => rows[0] ?? null);
}

/**
 * Gives schedules back, free from `at` (db/dispatch.ts releaseSql). `next_run_at` is the schedule's
 * own occurrence and stays: a schedule moved on before its firing failed fires at its next occurrence.
 */
export function releaseSchedules(db: D1Database, held: readonly HeldRow[], at: string, latest: string) {
  return releaseHeld(db, { table: "schedules", dispatch: true }, held, at, latest);
}

export interface OccurrenceRecord {
  scheduledAt: string;
  outcome: OccurrenceOutcome;
  runId?: string | null | undefined;
  reason?: string | null | undefined;
}

/** Insert an occurrence only when the statement before it in the batch changed a row. */
function insertOccurrenceIfChanged(
  db: D1Database,
  scheduleId: string,
  decidedAt: string,
  o: OccurrenceRecord,
): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO schedule_occurrences (schedule_id, scheduled_at, decided_at, outcome, run_id, reason)
       SELECT ?, ?, ?, ?, ?, ? WHERE changes() > 0`,
    )
    .bind(scheduleId, o.scheduledAt, decidedAt, o.outcome, o.runId ?? null, o.reason ?? null);
}

/**
 * Ends a tick's hold on a schedule: records what its occurrences came to, moves it on, and releases
 * the lease, in one batch. Nothing happens unless the tick still holds the lease (another tick took
 * over after it ran out). `next_run_at` only moves if nobody changed it meanwhile: a PATCH that
 * paused the schedule or changed its cron while it was firing wins.
 */
export async function releaseSchedule(
  db: D1Database,
  claimed: Pick<Schedule, "id" | "lease_until" | "next_run_at">,
  now: string,
  next: {
    nextRunAt: string | null;
    lastRunId?: string | undefined;
    lastFiredAt?: string | undefined;
    /** Pause the schedule (its key was revoked). */
    pause?: boolean | undefined;
  },
  occurrences: OccurrenceRecord[],
): Promise<boolean> {
  const [released] = await db.batch([
    db
      .prepare(
        `UPDATE schedules SET
           next_run_at = CASE WHEN ? THEN NULL WHEN next_run_at IS ? THEN ? ELSE next_run_at END,
           enabled = CASE WHEN ? THEN 0 ELSE enabled END,
           last_run_id = COALESCE(?, last_run_id),
           last_fired_at = COALESCE(?, last_fired_at),
           lease_until = NULL,
           updated_at = ?
         WHERE id = ? AND lease_until IS ?
         RETURNING id`,
      )
      .bind(
        next.pause ? 1 : 0,
        claimed.next_run_at,
        next.nextRunAt,
        next.pause ? 1 : 0,
        next.lastRunId ?? null,
        next.lastFiredAt ?? null,
        now,
        claimed.id,
        claimed.lease_until,
      ),
    ...occurrences.map((o) => insertOccurrenceIfChanged(db, claimed.id, now, o)),
  ]);
  return (released?.results.length ?? 0) > 0;
}

/** A run started by hand: it becomes the schedule's newest run (so overlap: skip waits for it). */
export async function recordTriggeredRun(
  db: D1Database,
  scheduleId: string,
  now: string,
  occurrence: OccurrenceRecord,
): Promise<void> {
  const statements = [
    db
      .prepare("UPDATE schedules SET last_run_id = COALESCE(?, last_run_id), updated_at = ? WHERE id = ?")
      .bind(occurrence.runId ?? null, now, scheduleId),
    insertOccurrenceIfChanged(db, scheduleId, now, occurrence),
  ];
  await db.batch(statements);
}

export interface Occurrence {
  id: number;
  schedule_id: string;
  scheduled_at: string;
  decided_at: string;
  outcome: OccurrenceOutcome;
  run_id: string | null;
  reason: string | null;
}

/** Newest first; one row more than the page. */
export async function listOccurrences(
  db: D1Database,
  query: { scheduleId: string; beforeId?: number | undefined; limit: number },
): Promise<Occurrence[]> {
  const before = query.beforeId !== undefined ? "AND id < ?" : "";
  const params: unknown[] = [
    query.scheduleId,
    ...(query.beforeId !== undefined ? [query.beforeId] : []),
    query.limit + 1,
  ];
  const { results } = await db
    .prepare(`SELECT * FROM schedule_occurrences WHERE schedule_id = ? ${before} ORDER BY id DESC LIMIT ?`)
    .bind(...params)
    .all<Occurrence>();
  return results;
}

/**
 * Stores whether a finished scheduled run's output changed and, for a run with a result, makes it
 * the schedule's last success unless a newer occurrence already is. Decided once per run: a second
 * call finds `output_changed` set and changes nothing. Returns the run's stored `output_changed`.
 */
export async function recordScheduledRunOutcome(
  db: D1Database,
  runId: string,
  now: string,
  outcome: {
    outputChanged: boolean;
    success: {
      scheduleId: string;
      scheduledAt: string;
      interactionId: string | null;
      outputHash: string;
    };
  },
): Promise<boolean | null> {
  const { success } = outcome;
  await db.batch([
    db
      .prepare("UPDATE runs SET output_changed = ? WHERE id = ? AND output_changed IS NULL")
      .bind(outcome.outputChanged ? 1 : 0, runId),
    db
      .prepare(
        `UPDATE schedules SET last_success_run_id = ?, last_success_at = ?, last_success_interaction_id = ?,
           last_output_hash = ?, updated_at = ?
         WHERE changes() > 0 AND id = ? AND (last_success_at IS NULL OR last_success_at <= ?)`,
      )
      .bind(
        runId,
        success.scheduledAt,
        success.interactionId,
        success.outputHash,
        now,
        success.scheduleId,
        success.scheduledAt,
      ),
  ]);
  const stored = await db
    .prepare("SELECT output_changed FROM runs WHERE id = ?")
    .bind(runId)
    .first<{ output_changed: number | null }>();
  return stored?.output_changed == null ? null : stored.output_changed === 1;
}

/** Names of the schedules among `ids` (at most a page of them) that `apiKeyId` owns; null: any key's. */
export async function listScheduleNames(
  db: D1Database,
  ids: string[],
  apiKeyId: string | null,
): Promise<Array<{ id: string; name: string }>> {
  if (ids.length === 0) return [];
  const owner = apiKeyId === null ? "" : " AND api_key_id = ?";
  // The ids as one JSON array, not a parameter each: a page of 100 runs of distinct schedules and the
  // key would be 101 bound parameters, one over D1's limit.
  const { results } = await db
    .prepare(`SELECT id, name FROM schedules WHERE id IN (SELECT value FROM json_each(?))${owner}`)
    .bind(JSON.stringify([...new Set(ids)]), ...(apiKeyId === null ? [] : [apiKeyId]))
    .all<{ id: string; name: string }>();
  return results;
}
