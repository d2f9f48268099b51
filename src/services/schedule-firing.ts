// Firing one due schedule: decide what its due occurrences come to (a run, a skip), start the run
// through createRun, and move the schedule to its next occurrence.
//
// Missed occurrences. The tick runs every minute, so an occurrence is normally handled within
// seconds of its time. An occurrence is *missed* when no tick handled it within MISSED_AFTER_MS
// (services/timing.ts, two minutes: one lost or late tick, or a full batch that left it for the next tick, is not yet
// "missed"). When a tick finds missed occurrences, `missed: run_once` starts one run, for the latest
// due occurrence, standing for all of them; `missed: skip` starts none for them (a latest occurrence
// that is itself on time still fires). Neither ever starts more than one run per tick.

import { findKey } from "../db/keys";
import { findRun, isTerminal, type Run } from "../db/runs";
import { type OccurrenceRecord, releaseSchedule, type Schedule } from "../db/schedules";
import { ApiError } from "../errors";
import type { ServiceContext } from "./context";
import { createRun } from "./runs";
import { occurrenceIdempotencyKey } from "./schedule-occurrence";
import { latestOccurrence, nextOccurrence } from "./schedule-times";
import { scheduledRunRequest } from "./schedules";
import { MISSED_AFTER_MS } from "./timing";

export interface FireResult {
  outcomes: OccurrenceRecord["outcome"][];
  runId: string | null;
  /** False when another tick took the schedule over after this one's lease ran out. */
  released: boolean;
}

/**
 * Fires a schedule this tick claimed (its lease is in `schedule.lease_until`). Throws only on
 * unexpected failures (D1, configuration): the lease then runs out and a later tick redoes the
 * occurrence, and the occurrence's Idempotency-Key makes createRun return the run made the first time.
 */
export async function fireSchedule(ctx: ServiceContext, schedule: Schedule, now: Date): Promise<FireResult> {
  if (!schedule.next_run_at) throw new Error(`schedule ${schedule.id} was claimed without a next_run_at`);
  const key = await findKey(ctx.db, schedule.api_key_id);
  if (!key || key.revoked_at) return pauseForRevokedKey(ctx, schedule);
  const due = new Date(schedule.next_run_at);
  const found = latestOccurrence(schedule.cron, schedule.timezone, now);
  const latest = found && found > due ? found : due;
  const latestAt = latest.toISOString();
  const onTime = now.getTime() - latest.getTime() <= MISSED_AFTER_MS;
  const earlierMissed = latest > due;
  const records: OccurrenceRecord[] = [];

  let fire = true;
  let reason: string | null = null;
  if (schedule.missed === "skip") {
    if (!onTime) {
      fire = false;
      records.push({
        scheduledAt: latestAt,
        outcome: "skipped_missed",
        reason: `missed: occurrences from ${schedule.next_run_at} to ${latestAt} were not reached in time (missed: skip)`,
      });
    } else if (earlierMissed) {
      records.push({
        scheduledAt: schedule.next_run_at,
        outcome: "skipped_missed",
        reason: `missed: occurrences from ${schedule.next_run_at} up to ${latestAt} were not reached in time (missed: skip)`,
      });
    }
  } else if (!onTime || earlierMissed) {
    reason = `one run for the occurrences missed since ${schedule.next_run_at} (missed: run_once)`;
  }

  if (fire && schedule.overlap === "skip") {
    const previous = schedule.last_run_id ? await findRun(ctx.db, schedule.last_run_id) : null;
    if (previous && inFlight(previous)) {
      fire = false;
      records.push({
        scheduledAt: latestAt,
        outcome: "skipped_overlap",
        reason: `the previous run ${previous.id} is still ${previous.status} (overlap: skip)`,
      });
    }
  }

  let runId: string | null = null;
  if (fire) {
    const started = await startRun(ctx, schedule, latest, key.monthly_budget_micro_usd !== null);
    runId = started.runId;
    records.push({
      scheduledAt: latestAt,
      // Over the key's monthly budget: skipped, and the schedule keeps going (next month fits again).
      outcome: started.overBudget ? "skipped_budget" : started.runId ? "fired" : "failed",
      runId: started.runId,
      reason: [reason, started.problem].filter(Boolean).join("; ") || null,
    });
  }

  const next = nextOccurrence(schedule.cron, schedule.timezone, now);
  const released = await releaseSchedule(
    ctx.db,
    schedule,
    ctx.now().toISOString(),
    {
      nextRunAt: next?.toISOString() ?? null,
      lastRunId: runId ?? undefined,
      lastFiredAt: runId ? latestAt : undefined,
    },
    records,
  );
  ctx.log.info("schedule.fired", {
    schedule_id: schedule.id,
    scheduled_at: latestAt,
    outcomes: records.map((r) => r.outcome).join(","),
    run_id: runId,
    next_run_at: next?.toISOString() ?? null,
    released,
  });
  return { outcomes: records.map((r) => r.outcome), runId, released };
}

/** A revoked key's schedules stop spending: the schedule is paused, and the occurrence says why. */
async function pauseForRevokedKey(ctx: ServiceContext, schedule: Schedule): Promise<FireResult> {
  const released = await releaseSchedule(
    ctx.db,
    schedule,
    ctx.now().toISOString(),
    { nextRunAt: null, pause: true },
    [
      {
        scheduledAt: schedule.next_run_at ?? ctx.now().toISOString(),
        outcome: "failed",
        reason: "the schedule's API key was revoked; the schedule is paused",
      },
    ],
  );
  ctx.log.warn("schedule.paused_key_revoked", { schedule_id: schedule.id, api_key_id: schedule.api_key_id });
  return { outcomes: ["failed"], runId: null, released };
}

/**
 * A run is in flight until the pipeline is done with it: not yet terminal, or terminal with work
 * left (a completed run whose result is still being fetched has a next_sweep_at).
 */
function inFlight(run: Run): boolean {
  return !isTerminal(run.status) || run.next_sweep_at !== null;
}

/**
 * Starts the occurrence's run. A run Parallel refused is still the occurrence's run (stored as
 * rejected). A rendered template that no longer passes the checks (e.g. too long with its dates
 * filled in) makes no run: the occurrence fails with the reason, and the schedule moves on.
 */
async function startRun(
  ctx: ServiceContext,
  schedule: Schedule,
  scheduledAt: Date,
  keyHasBudget: boolean,
): Promise<{ runId: string | null; problem: string | null; overBudget?: true }> {
  try {
    const { run } = await createRun(ctx, {
      apiKeyId: schedule.api_key_id,
      request: scheduledRunRequest(schedule, scheduledAt),
      scheduleId: schedule.id,
      idempotencyKey: occurrenceIdempotencyKey(schedule.id, scheduledAt.toISOString()),
      keyHasBudget,
    });
    return { runId: run.id, problem: null };
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    if (error.code === "budget_exceeded") {
      return { runId: null, problem: `budget: ${error.message}`, overBudget: true };
    }
    const runId = typeof error.details[0]?.run_id === "string" ? error.details[0].run_id : null;
    // Parallel refused it (the run is stored as rejected), or an earlier attempt at this occurrence
    // already made the run and the template has changed since: either way the occurrence has its run.
    if ((error.code === "parallel_rejected" || error.code === "idempotency_conflict") && runId) {
      return { runId, problem: error.code === "parallel_rejected" ? error.message : null };
    }
    // A template that no longer passes the checks, or a chained interaction that is not the key's.
    if (error.code === "validation_failed" || error.code === "not_found") {
      return { runId: null, problem: error.message };
    }
    throw error;
  }
}
