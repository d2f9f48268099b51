// runs: every run a key asked for, from `submitting` to its terminal state and stored result.
import { DISPATCHED, dispatchClaimSet, type HeldRow, releaseHeld, TAKEN_SET } from "./dispatch";
import { pageStatement } from "./page";
import { overflowStatement, type RunEvent, type RunEventKind, runEvent, timelineSet } from "./run-events";
import { ACTIVE_STATUSES, RUN_STATUSES, RUN_STEPS, stepGuard, TERMINAL_STATUSES } from "./run-states";

// The states are declared with the run's steps (run-states.ts); most code reads them from here.
export { ACTIVE_STATUSES, RUN_STATUSES, TERMINAL_STATUSES };

export type RunStatus = (typeof RUN_STATUSES)[number];
export type ActiveStatus = (typeof ACTIVE_STATUSES)[number];
export type TerminalStatus = (typeof TERMINAL_STATUSES)[number];

export function isTerminal(status: string): status is TerminalStatus {
  return (TERMINAL_STATUSES as readonly string[]).includes(status);
}
export function isActive(status: string): status is ActiveStatus {
  return (ACTIVE_STATUSES as readonly string[]).includes(status);
}

export interface RunError {
  code: string;
  message: string;
  detail?: unknown;
}

/** A run as the code uses it: JSON columns parsed. Field names are the column names. */
export interface Run {
  id: string;
  api_key_id: string;
  schedule_id: string | null;
  parallel_run_id: string | null;
  interaction_id: string | null;
  status: RunStatus;
  processor: string;
  input: string | Record<string, unknown>;
  task_spec: Record<string, unknown> | null;
  metadata: Record<string, string | number | boolean> | null;
  source_policy: Record<string, unknown> | null;
  previous_interaction_id: string | null;
  enable_events: boolean | null;
  mcp_servers: Array<Record<string, unknown>> | null;
  callback_url: string | null;
  idempotency_key: string | null;
  request_hash: string | null;
  output: Record<string, unknown> | null;
  /** Parallel's warnings, as its last status update sent them. */
  warnings: unknown[] | null;
  /** taskrelay's own warnings about the run, set when it is stored (migration 0010). */
  relay_warnings?: unknown[] | null;
  error: RunError | null;
  created_at: string;
  updated_at: string;
  submitted_at: string | null;
  finished_at: string | null;
  result_stored_at: string | null;
  deadline_at: string | null;
  attempts: number;
  next_sweep_at: string | null;
  lease_until: string | null;
  /** Consecutive 404s from Parallel for the run: its polls, then its /result (migration 0012). */
  not_found_count?: number;
  /** Scheduled runs: whether the output differs from the schedule's last success; null when not compared. */
  output_changed?: boolean | null;
  /** An output too large for a D1 row is in R2 under this key, and `output` is null (services/outputs.ts). */
  output_key?: string | null;
  /** The size of the output's JSON, wherever it is stored; null until a result is stored. */
  output_bytes?: number | null;
  /** Batch runs: the batch (migration 0014) and the input's position in it, from 0; null for single runs. */
  batch_id?: string | null;
  batch_index?: number | null;
  /**
   * The price of the run's processor when it was stored, in micro-dollars (migration 0016): what it
   * costs once Parallel accepted it. The API shows 0 for a run Parallel never accepted.
   */
  cost_micro_usd?: number;
  /** The month (YYYY-MM) whose budget holds this run's cost; null when nothing was reserved. */
  spend_month?: string | null;
  /** The timeline's first events, JSON text as stored (db/run-events.ts reads it; migration 0015). */
  timeline?: string | null;
  /** How many events the run has, those past the inline ones in run_events. */
  timeline_count?: number;
}

/**
 * The columns a list shows (the API's run view, the dashboard's rows): never the output, so a page
 * of runs costs the same whatever their outputs weigh.
 */
export const RUN_SUMMARY_COLUMNS = [
  "id",
  "api_key_id",
  "schedule_id",
  "parallel_run_id",
  "interaction_id",
  "status",
  "processor",
  "input",
  "metadata",
  "previous_interaction_id",
  "callback_url",
  "warnings",
  "relay_warnings",
  "error",
  "created_at",
  "updated_at",
  "submitted_at",
  "finished_at",
  "result_stored_at",
  "output_changed",
  "output_bytes",
  "cost_micro_usd",
  "batch_id",
  "batch_index",
] as const satisfies ReadonlyArray<keyof Run>;

export type RunSummary = Pick<Run, (typeof RUN_SUMMARY_COLUMNS)[number]>;

type RunRow = Omit<
  Run,
  | "input"
  | "task_spec"
  | "metadata"
  | "source_policy"
  | "enable_events"
  | "output_changed"
  | "mcp_servers"
  | "output"
  | "warnings"
  | "relay_warnings"
  | "error"
  | "output_key"
  | "output_bytes"
> & {
  input: string;
  task_spec: string | null;
  metadata: string | null;
  source_policy: string | null;
  enable_events: number | null;
  output_changed?: number | null;
  mcp_servers: string | null;
  output: string | null;
  warnings: string | null;
  relay_warnings?: string | null;
  error: string | null;
  output_key?: string | null;
  output_bytes?: number | null;
};

const json = (value: unknown): string | null => (value == null ? null : JSON.stringify(value));
const parse = <T>(text: string | null): T | null => (text == null ? null : (JSON.parse(text) as T));

export function rowToRun(row: RunRow): Run {
  return {
    ...row,
    input: JSON.parse(row.input) as Run["input"],
    task_spec: parse(row.task_spec),
    metadata: parse(row.metadata),
    source_policy: parse(row.source_policy),
    enable_events: row.enable_events == null ? null : row.enable_events === 1,
    output_changed: row.output_changed == null ? null : row.output_changed === 1,
    mcp_servers: parse(row.mcp_servers),
    output: parse(row.output),
    warnings: parse(row.warnings),
    relay_warnings: parse(row.relay_warnings ?? null),
    error: parse(row.error),
  };
}

function rowToRunSummary(row: Pick<RunRow, (typeof RUN_SUMMARY_COLUMNS)[number]>): RunSummary {
  return {
    ...row,
    input: JSON.parse(row.input) as Run["input"],
    metadata: parse(row.metadata),
    output_changed: row.output_changed == null ? null : row.output_changed === 1,
    warnings: parse(row.warnings),
    relay_warnings: parse(row.relay_warnings ?? null),
    error: parse(row.error),
  };
}

async function firstRun(statement: D1PreparedStatement): Promise<Run | null> {
  const row = await statement.first<RunRow>();
  return row ? rowToRun(row) : null;
}

async function allRuns(statement: D1PreparedStatement): Promise<Run[]> {
  const { results } = await statement.all<RunRow>();
  return results.map(rowToRun);
}

/** The run's INSERT; `events` (its `stored` event) start its timeline in the same row. */
export function insertRun(db: D1Database, run: Run, events: readonly RunEvent[] = []): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO runs (id, api_key_id, schedule_id, parallel_run_id, interaction_id, status, processor, input,
         task_spec, metadata, source_policy, previous_interaction_id, enable_events, mcp_servers, callback_url,
         idempotency_key, request_hash, output, warnings, relay_warnings, error, created_at, updated_at, submitted_at,
         finished_at, result_stored_at, deadline_at, attempts, next_sweep_at, lease_until, output_key, output_bytes,
         cost_micro_usd, spend_month,
         timeline, timeline_count)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    .bind(
      run.id,
      run.api_key_id,
      run.schedule_id,
      run.parallel_run_id,
      run.interaction_id,
      run.status,
      run.processor,
      JSON.stringify(run.input),
      json(run.task_spec),
      json(run.metadata),
      json(run.source_policy),
      run.previous_interaction_id,
      run.enable_events == null ? null : run.enable_events ? 1 : 0,
      json(run.mcp_servers),
      run.callback_url,
      run.idempotency_key,
      run.request_hash,
      json(run.output),
      json(run.warnings),
      json(run.relay_warnings ?? null),
      json(run.error),
      run.created_at,
      run.updated_at,
      run.submitted_at,
      run.finished_at,
      run.result_stored_at,
      run.deadline_at,
      run.attempts,
      run.next_sweep_at,
      run.lease_until,
      run.output_key ?? null,
      run.output_bytes ?? null,
      run.cost_micro_usd ?? 0,
      run.spend_month ?? null,
      events.length > 0 ? JSON.stringify(events) : null,
      events.length,
    );
}

export function findRun(db: D1Database, id: string): Promise<Run | null> {
  return firstRun(db.prepare("SELECT * FROM runs WHERE id = ?").bind(id));
}

/** A key's own run; another key's run is not found, exactly as an unknown id. */
export function findOwnedRun(db: D1Database, apiKeyId: string, id: string): Promise<Run | null> {
  return firstRun(db.prepare("SELECT * FROM runs WHERE id = ? AND api_key_id = ?").bind(id, apiKeyId));
}

/**
 * Whether one of the key's runs has this interaction id. Two index lookups: by parallel_run_id (the
 * interaction id is the run id at Parallel so far), else `runs_by_other_interaction`, whose
 * condition the second branch repeats so SQLite can use it.
 */
export async function ownsInteraction(
  db: D1Database,
  apiKeyId: string,
  interactionId: string,
): Promise<boolean> {
  const row = await db
    .prepare(
      `SELECT id FROM runs WHERE parallel_run_id = ? AND interaction_id = ? AND api_key_id = ?
       UNION ALL
       SELECT id FROM runs WHERE interaction_id = ? AND interaction_id <> parallel_run_id AND api_key_id = ?
       LIMIT 1`,
    )
    .bind(interactionId, interactionId, apiKeyId, interactionId, apiKeyId)
    .first<{ id: string }>();
  return row !== null;
}

export function findRunByParallelId(db: D1Database, parallelRunId: string): Promise<Run | null> {
  return firstRun(db.prepare("SELECT * FROM runs WHERE parallel_run_id = ?").bind(parallelRunId));
}

export function findRunByIdempotencyKey(db: D1Database, apiKeyId: string, key: string): Promise<Run | null> {
  return firstRun(
    db.prepare("SELECT * FROM runs WHERE api_key_id = ? AND idempotency_key = ?").bind(apiKeyId, key),
  );
}

export interface RunListQuery {
  /** The owning key; null: every key's runs (the admin's dashboard). */
  apiKeyId: string | null;
  status?: RunStatus | undefined;
  scheduleId?: string | undefined;
  /** One batch's runs (through `runs_by_batch_id`). */
  batchId?: string | undefined;
  /** Only runs with an id below this one (older): the cursor of the previous page. */
  beforeId?: string | undefined;
  limit: number;
}

/** Newest first, one row more than the page (see db/page.ts); the summary columns only. */
export async function listRuns(db: D1Database, query: RunListQuery): Promise<RunSummary[]> {
  const filters = {
    api_key_id: query.apiKeyId,
    status: query.status,
    schedule_id: query.scheduleId,
    batch_id: query.batchId,
  };
  const statement = pageStatement(db, "runs", {
    filters,
    beforeId: query.beforeId,
    limit: query.limit,
    columns: RUN_SUMMARY_COLUMNS,
  });
  const { results } = await statement.all<Pick<RunRow, (typeof RUN_SUMMARY_COLUMNS)[number]>>();
  return results.map(rowToRunSummary);
}

/** The columns a step may change. Everything else about a run is fixed at creation. */
export type RunChanges = Partial<
  Pick<
    Run,
    | "parallel_run_id"
    | "interaction_id"
    | "status"
    | "output"
    | "output_key"
    | "output_bytes"
    | "warnings"
    | "error"
    | "submitted_at"
    | "finished_at"
    | "result_stored_at"
    | "deadline_at"
    | "attempts"
    | "next_sweep_at"
    | "lease_until"
    | "not_found_count"
  >
>;

const JSON_COLUMNS = new Set<keyof RunChanges>(["output", "warnings", "error"]);

/**
 * UPDATE runs SET … WHERE id = ? AND <guard>. The guard is what makes a step idempotent: it names
 * the state the step expects (e.g. `status = 'submitting'`), so a step that lost a race changes nothing.
 */
export function updateRun(
  db: D1Database,
  id: string,
  now: string,
  changes: RunChanges,
  guard?: { sql: string; params?: unknown[] },
  /** Appended to the run's timeline by this same UPDATE (db/run-events.ts; the overflow statement follows). */
  events: readonly RunEvent[] = [],
  /** A column set by an expression rather than a value (SQL written in code, and its values). */
  also?: { sql: string; params: unknown[] },
): D1PreparedStatement {
  const columns = Object.keys(changes) as Array<keyof RunChanges>;
  const timeline = events.length > 0 ? timelineSet(events) : null;
  const sets = [
    ...columns.map((c) => `${c} = ?`),
    "updated_at = ?",
    ...(timeline ? [timeline.sql] : []),
    ...(also ? [also.sql] : []),
  ];
  const values = columns.map((c) => (JSON_COLUMNS.has(c) ? json(changes[c]) : (changes[c] ?? null)));
  const where = guard ? `id = ? AND (${guard.sql})` : "id = ?";
  return db
    .prepare(`UPDATE runs SET ${sets.join(", ")} WHERE ${where} RETURNING *`)
    .bind(...values, now, ...(timeline?.params ?? []), ...(also?.params ?? []), id, ...(guard?.params ?? []));
}

export async function updateRunReturning(
  db: D1Database,
  id: string,
  now: string,
  changes: RunChanges,
  guard?: { sql: string; params?: unknown[] },
): Promise<Run | null> {
  return firstRun(updateRun(db, id, now, changes, guard));
}

/**
 * The two statements of a change: the guarded update, which appends the change's timeline event to
 * the run's row (so the event is written exactly when the update matched, at no row of its own), and
 * the event's overflow statement, which writes only for a run past TIMELINE_INLINE_MAX events.
 */
export function changeRunStatements(
  db: D1Database,
  run: Pick<Run, "id">,
  now: string,
  changes: RunChanges,
  event: { kind: RunEventKind; detail?: Record<string, unknown> | null },
  guard?: { sql: string; params?: unknown[] },
  also?: { sql: string; params: unknown[] },
): [D1PreparedStatement, D1PreparedStatement] {
  const events = [runEvent(now, event.kind, event.detail ?? null)];
  return [updateRun(db, run.id, now, changes, guard, events, also), overflowStatement(db, run.id, events)];
}

/** The run a statement of a batch returned (an UPDATE … RETURNING *), if any. */
export function returnedRun(result: D1Result | undefined): Run | null {
  const row = result?.results[0] as RunRow | undefined;
  return row ? rowToRun(row) : null;
}

/**
 * Applies a change and records it on the run's timeline in one batch. Returns the updated run, or
 * null when the guard did not hold (another worker got there first) — then no event is written.
 */
export async function changeRun(
  db: D1Database,
  run: Pick<Run, "id">,
  now: string,
  changes: RunChanges,
  event: { kind: RunEventKind; detail?: Record<string, unknown> | null },
  guard?: { sql: string; params?: unknown[] },
): Promise<Run | null> {
  const [updated] = await db.batch(changeRunStatements(db, run, now, changes, event, guard));
  return returnedRun(updated);
}

/**
 * Claims up to `limit` due runs in the given statuses for one sweeper job: sets their lease and
 * returns them. One statement, so two overlapping ticks can never claim the same run. Reads only
 * due rows through `runs_due`; finished runs (next_sweep_at NULL) are not in that index.
 */
export function claimDueRuns(
  db: D1Database,
  statuses: readonly RunStatus[],
  now: string,
  leaseUntil: string,
  limit: number,
  /** A further condition on the due rows, for jobs that share a status (SQL written in code). */
  also = "1",
): D1PreparedStatement {
  const placeholders = statuses.map(() => "?").join(", ");
  return db
    .prepare(
      // ?1 and ?2 are the lease and the time; SQLite numbers each later "?" from 3 on.
      `UPDATE runs SET ${dispatchClaimSet({ lease: "?1", now: "?2" })}, updated_at = ?2
       WHERE id IN (
         SELECT id FROM runs
         WHERE status IN (${placeholders}) AND next_sweep_at <= ?
           AND (lease_until IS NULL OR lease_until <= ?) AND (${also})
         ORDER BY next_sweep_at
         LIMIT ?
       )
       RETURNING *`,
    )
    .bind(leaseUntil, now, ...statuses, now, now, limit);
}

export async function claimDueRunRows(
  db: D1Database,
  statuses: readonly RunStatus[],
  now: string,
  leaseUntil: string,
  limit: number,
  also?: string,
): Promise<Run[]> {
  return allRuns(claimDueRuns(db, statuses, now, leaseUntil, limit, also));
}

/**
 * Takes one run for the queue message that names it (cron/work.ts): still in one of the job's
 * statuses and due, and either free, still held under the lease the message carries, or still the
 * tick's (db/dispatch.ts: no consumer took it since, so an earlier message of it works it). Renews the
 * lease. Null: another worker holds it, or it is no longer this job's (a webhook finished it).
 */
export async function takeDueRun(
  db: D1Database,
  id: string,
  statuses: readonly RunStatus[],
  now: string,
  leaseUntil: string,
  heldLease: string,
  also = "1",
): Promise<Run | null> {
  const placeholders = statuses.map(() => "?").join(", ");
  return firstRun(
    db
      .prepare(
        `UPDATE runs SET lease_until = ?, updated_at = ?, ${TAKEN_SET}
         WHERE id = ? AND status IN (${placeholders}) AND next_sweep_at <= ?
           AND (lease_until IS NULL OR lease_until <= ? OR lease_until = ? OR ${DISPATCHED}) AND (${also})
         RETURNING *`,
      )
      .bind(leaseUntil, now, id, ...statuses, now, now, heldLease),
  );
}

/**
 * Gives runs back, due again at `at` (db/dispatch.ts releaseSql): a failed message's run for its retry,
 * whatever its step is by then (a poll that recorded the run completed leaves it due for its result
 * fetch), or runs whose sendBatch failed.
 */
export function releaseRuns(db: D1Database, held: readonly HeldRow[], at: string, latest: string) {
  return releaseHeld(db, { table: "runs", due: "next_sweep_at", dispatch: true }, held, at, latest);
}

const READY_TO_FINISH_SQL = RUN_STEPS.finish.also;
const RESULT_PENDING_SQL = stepGuard("result").sql;

/**
 * Marks a run's finishing done: nothing is due for it any more. Guarded by the status it was
 * finished in, so a late completion of an expired run (due for its result fetch) is left alone.
 */
export function clearFinishDue(db: D1Database, run: Pick<Run, "id" | "status">): D1PreparedStatement {
  // Bookkeeping only: updated_at keeps the time of the run's last visible change.
  return db
    .prepare(
      `UPDATE runs SET next_sweep_at = NULL, lease_until = NULL
       WHERE id = ? AND status = ? AND (${READY_TO_FINISH_SQL})`,
    )
    .bind(run.id, run.status);
}

/**
 * clearFinishDue as SET clauses, for the UPDATE of the run that records its delivery's creation: one
 * write of the run for both (db/deliveries.ts insertDelivery). The same guard, per column.
 */
export function clearFinishDueSet(run: Pick<Run, "status">): { sql: string; params: unknown[] } {
  const ready = `status = ? AND (${READY_TO_FINISH_SQL})`;
  return {
    sql: `next_sweep_at = CASE WHEN ${ready} THEN NULL ELSE next_sweep_at END, lease_until = CASE WHEN ${ready} THEN NULL ELSE lease_until END`,
    params: [run.status, run.status],
  };
}

/** What a result-fetch claim sets: its lease, and when the next attempt is due should this one never finish. */
export interface ResultClaim {
  leaseUntil: string;
  /** When the next attempt is due should this one never finish (its invocation dies). */
  retryAt: string;
  /** A lease the caller already holds on the run (the poller's), which the claim takes over. */
  heldLease?: string | null;
}

/**
 * claimResultFetchStatement as SET clauses of the UPDATE that records the run `completed`: the same
 * columns (the lease, the attempt counted, `next_sweep_at` at the attempt's retry), set only if the
 * lease is free, held by the caller, or a submission's (moot once the run is finished); otherwise the
 * change's own values (`unclaimed`). One write of the run for both. SQLite evaluates every SET
 * expression on the row as it was, so the three CASEs agree.
 */
export function claimResultFetchSet(
  now: string,
  claim: ResultClaim & { attempt: number },
  unclaimed: { attempts: number; next_sweep_at: string | null },
): { sql: string; params: unknown[] } {
  const free = "lease_until IS NULL OR lease_until <= ? OR lease_until = ? OR status = 'submitting'";
  const freeParams = [now, claim.heldLease ?? null];
  return {
    sql: [
      `lease_until = CASE WHEN ${free} THEN ? ELSE lease_until END`,
      `attempts = CASE WHEN ${free} THEN ? ELSE ? END`,
      `next_sweep_at = CASE WHEN ${free} THEN ? ELSE ? END`,
    ].join(", "),
    params: [
      ...freeParams,
      claim.leaseUntil,
      ...freeParams,
      claim.attempt,
      unclaimed.attempts,
      ...freeParams,
      claim.retryAt,
      unclaimed.next_sweep_at,
    ],
  };
}

/** Takes the lease on one run for fetching its result, if nobody holds it and the result is still missing. */
export function claimResultFetchStatement(
  db: D1Database,
  id: string,
  now: string,
  claim: ResultClaim,
): D1PreparedStatement {
  // The attempt is counted here, before the download: an invocation that dies during it (out of
  // memory, out of time) has still used an attempt, so a result that cannot be fetched gives up.
  return db
    .prepare(
      `UPDATE runs SET lease_until = ?, attempts = attempts + 1, next_sweep_at = ?, updated_at = ?
       WHERE id = ? AND ${RESULT_PENDING_SQL}
         AND (lease_until IS NULL OR lease_until <= ? OR lease_until = ?)
       RETURNING *`,
    )
    .bind(claim.leaseUntil, claim.retryAt, now, id, now, claim.heldLease ?? null);
}
