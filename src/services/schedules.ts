// Schedules: a run template that recurs on a cron in its owner's time zone. Every run a schedule
// starts, by the tick or by hand, goes through createRun like POST /v1/runs, with a schedule_id.
import type { Run } from "../db/runs";
import {
  deleteOwnedSchedule,
  findOwnedSchedule,
  insertSchedule,
  listOccurrences,
  listSchedules,
  type Occurrence,
  recordTriggeredRun,
  type Schedule,
  type ScheduleChanges,
  updateOwnedSchedule,
} from "../db/schedules";
import type { Config } from "../env";
import { ApiError, type ErrorDetail, validationFailed } from "../errors";
import { newId } from "../ids";
import type { RunRequest } from "../schemas/runs";
import type { RunTemplate, ScheduleCreate, ScheduleUpdate } from "../schemas/schedules";
import type { ServiceContext } from "./context";
import { beforeIdOf, decodeSequenceCursor, type PageRequest, toPage, toSequencePage } from "./pages";
import { checkCallback, checkRunRequest } from "./run-request";
import { createRun, listOwnedRuns, type RunPage } from "./runs";
import { occurrenceIdempotencyKey } from "./schedule-occurrence";
import { checkPlaceholders, placeholderValues, renderInput } from "./schedule-template";
import { canonicalTimeZone, checkCron, checkTimeZone, nextOccurrence } from "./schedule-times";

interface ScheduleDefinition {
  cron: string;
  timezone: string;
  template: RunTemplate;
  callbackUrl: string | null;
}

/** Every problem with a schedule's definition, each at its JSON path in the request. */
function checkSchedule(definition: ScheduleDefinition, config: Config, now: Date): ErrorDetail[] {
  return checkScheduleFields(
    {
      cron: definition.cron,
      timezone: definition.timezone,
      template: definition.template,
      callback: definition.callbackUrl ? { url: definition.callbackUrl } : null,
    },
    config,
    now,
  );
}

/**
 * The same checks on a schedule body that failed its zod schema (any JSON value), so its 422 lists
 * these problems too. Fields a PATCH leaves out are not checked here.
 */
export function checkScheduleBody(body: unknown, config: Config, now: Date): ErrorDetail[] {
  const fields = typeof body === "object" && body !== null && !Array.isArray(body) ? body : {};
  return checkScheduleFields(fields, config, now);
}

function checkScheduleFields(
  fields: { cron?: unknown; timezone?: unknown; template?: unknown; callback?: unknown },
  config: Config,
  now: Date,
): ErrorDetail[] {
  const input = (fields.template as { input?: unknown } | undefined)?.input;
  return [
    ...(typeof fields.cron === "string" ? checkCron(fields.cron, now) : []),
    ...(typeof fields.timezone === "string" ? checkTimeZone(fields.timezone) : []),
    ...(fields.template === undefined ? [] : checkRunRequest(fields.template, config, "template.")),
    ...(typeof input === "string" || (typeof input === "object" && input !== null)
      ? checkPlaceholders(input as string | Record<string, unknown>, "template.input")
      : []),
    ...checkCallback(fields.callback, config, "callback"),
  ];
}

/** `0  9 * * 1-5 ` is stored as `0 9 * * 1-5`. */
const normaliseCron = (cron: string) => cron.trim().split(/\s+/).join(" ");

function nextRunAt(cron: string, timezone: string, after: Date): string | null {
  return nextOccurrence(cron, timezone, after)?.toISOString() ?? null;
}

export async function createSchedule(
  ctx: ServiceContext,
  apiKeyId: string,
  body: ScheduleCreate,
): Promise<Schedule> {
  const now = ctx.now();
  const problems = checkSchedule(
    {
      cron: body.cron,
      timezone: body.timezone,
      template: body.template,
      callbackUrl: body.callback?.url ?? null,
    },
    ctx.config,
    now,
  );
  if (problems.length > 0) throw validationFailed(problems);

  const at = now.toISOString();
  const cron = normaliseCron(body.cron);
  const timezone = canonicalTimeZone(body.timezone) ?? body.timezone;
  const schedule: Schedule = {
    id: newId("sch", now),
    api_key_id: apiKeyId,
    name: body.name,
    cron,
    timezone,
    template: body.template,
    callback_url: body.callback?.url ?? null,
    overlap: body.overlap,
    missed: body.missed,
    notify: body.notify,
    chain_interactions: body.chain_interactions,
    enabled: body.enabled,
    next_run_at: body.enabled ? nextRunAt(cron, timezone, now) : null,
    lease_until: null,
    last_run_id: null,
    last_fired_at: null,
    last_success_run_id: null,
    last_success_at: null,
    last_success_interaction_id: null,
    last_output_hash: null,
    created_at: at,
    updated_at: at,
  };
  await insertSchedule(ctx.db, schedule).run();
  ctx.log.info("schedule.created", { schedule_id: schedule.id, next_run_at: schedule.next_run_at });
  return schedule;
}

export async function getOwnedSchedule(ctx: ServiceContext, apiKeyId: string, id: string): Promise<Schedule> {
  const schedule = await findOwnedSchedule(ctx.db, apiKeyId, id);
  if (!schedule) throw new ApiError("not_found", `No schedule ${id}.`);
  return schedule;
}

export async function listOwnedSchedules(
  ctx: ServiceContext,
  query: PageRequest & {
    /** null: every key's schedules (the admin's dashboard). */
    apiKeyId: string | null;
  },
): Promise<{ schedules: Schedule[]; nextCursor: string | null }> {
  const rows = await listSchedules(ctx.db, {
    apiKeyId: query.apiKeyId,
    beforeId: beforeIdOf(query.cursor),
    limit: query.limit,
  });
  const { items, nextCursor } = toPage(rows, query.limit);
  return { schedules: items, nextCursor };
}

/**
 * Changes any field. The whole result is checked as at creation. Pausing clears next_run_at;
 * resuming, or a new cron or time zone on an enabled schedule, computes it afresh from now, so
 * the time a schedule was paused is never made up for.
 */
export async function updateSchedule(
  ctx: ServiceContext,
  apiKeyId: string,
  id: string,
  patch: ScheduleUpdate,
): Promise<Schedule> {
  const current = await getOwnedSchedule(ctx, apiKeyId, id);
  const merged = {
    cron: patch.cron ?? current.cron,
    timezone: patch.timezone ?? current.timezone,
    template: patch.template ?? current.template,
    callbackUrl: patch.callback === undefined ? current.callback_url : (patch.callback?.url ?? null),
  };
  const now = ctx.now();
  const problems = checkSchedule(merged, ctx.config, now);
  if (problems.length > 0) throw validationFailed(problems);

  const changes: ScheduleChanges = {};
  if (patch.name !== undefined) changes.name = patch.name;
  if (patch.cron !== undefined) changes.cron = normaliseCron(patch.cron);
  if (patch.timezone !== undefined) changes.timezone = canonicalTimeZone(patch.timezone) ?? patch.timezone;
  if (patch.template !== undefined) changes.template = patch.template;
  if (patch.callback !== undefined) changes.callback_url = merged.callbackUrl;
  if (patch.overlap !== undefined) changes.overlap = patch.overlap;
  if (patch.missed !== undefined) changes.missed = patch.missed;
  if (patch.notify !== undefined) changes.notify = patch.notify;
  if (patch.chain_interactions !== undefined) changes.chain_interactions = patch.chain_interactions;
  if (patch.enabled !== undefined) changes.enabled = patch.enabled;

  const enabled = patch.enabled ?? current.enabled;
  const resumed = enabled && !current.enabled;
  const timingChanged =
    (changes.cron !== undefined && changes.cron !== current.cron) ||
    (changes.timezone !== undefined && changes.timezone !== current.timezone);
  if (!enabled) changes.next_run_at = null;
  else if (resumed || timingChanged) {
    changes.next_run_at = nextRunAt(changes.cron ?? current.cron, changes.timezone ?? current.timezone, now);
  }

  const updated = await updateOwnedSchedule(ctx.db, apiKeyId, id, now.toISOString(), changes);
  if (!updated) throw new ApiError("not_found", `No schedule ${id}.`);
  ctx.log.info("schedule.updated", {
    schedule_id: id,
    fields: Object.keys(changes).join(","),
    next_run_at: updated.next_run_at,
  });
  return updated;
}

/** Deletes the schedule. Its runs are kept (with their schedule_id); runs in flight finish normally. */
export async function deleteSchedule(ctx: ServiceContext, apiKeyId: string, id: string): Promise<void> {
  if (!(await deleteOwnedSchedule(ctx.db, apiKeyId, id))) {
    throw new ApiError("not_found", `No schedule ${id}.`);
  }
  ctx.log.info("schedule.deleted", { schedule_id: id });
}

/**
 * The run request for one occurrence: the template with its placeholders filled in, the schedule's
 * callback, and the last success's interaction when the schedule chains them.
 */
export function scheduledRunRequest(schedule: Schedule, scheduledAt: Date): RunRequest {
  const values = placeholderValues(scheduledAt, schedule.last_success_at, schedule.timezone);
  return {
    ...schedule.template,
    input: renderInput(schedule.template.input, values),
    ...(schedule.chain_interactions && schedule.last_success_interaction_id
      ? { previous_interaction_id: schedule.last_success_interaction_id }
      : {}),
    ...(schedule.callback_url ? { callback: { url: schedule.callback_url } } : {}),
  };
}

/**
 * Runs the schedule once now, whatever its state (paused, overlap, next_run_at): only the template
 * (with placeholders and chaining) counts. The run becomes the schedule's newest run.
 */
export async function triggerSchedule(ctx: ServiceContext, apiKeyId: string, id: string): Promise<Run> {
  const schedule = await getOwnedSchedule(ctx, apiKeyId, id);
  const now = ctx.now();
  const scheduledAt = now.toISOString();
  try {
    const { run } = await createRun(ctx, {
      apiKeyId,
      request: scheduledRunRequest(schedule, now),
      scheduleId: schedule.id,
      idempotencyKey: occurrenceIdempotencyKey(schedule.id, scheduledAt, true),
    });
    await recordTriggeredRun(ctx.db, schedule.id, scheduledAt, {
      scheduledAt,
      outcome: "triggered",
      runId: run.id,
    });
    ctx.log.info("schedule.triggered", { schedule_id: schedule.id, run_id: run.id });
    return run;
  } catch (error) {
    const runId = error instanceof ApiError ? (error.details[0]?.run_id as string | undefined) : undefined;
    if (error instanceof ApiError && error.code === "parallel_rejected" && runId) {
      await recordTriggeredRun(ctx.db, schedule.id, scheduledAt, {
        scheduledAt,
        outcome: "triggered",
        runId,
        reason: error.message,
      });
    }
    throw error;
  }
}

export async function listScheduleRuns(
  ctx: ServiceContext,
  query: { apiKeyId: string; scheduleId: string; limit: number; cursor?: string | undefined },
): Promise<RunPage> {
  await getOwnedSchedule(ctx, query.apiKeyId, query.scheduleId);
  return listOwnedRuns(ctx, query);
}

const OCCURRENCE_CURSOR_PREFIX = "occ";

export async function listScheduleOccurrences(
  ctx: ServiceContext,
  query: { apiKeyId: string; scheduleId: string; limit: number; cursor?: string | undefined },
): Promise<{ occurrences: Occurrence[]; nextCursor: string | null }> {
  await getOwnedSchedule(ctx, query.apiKeyId, query.scheduleId);
  const beforeId = query.cursor ? decodeSequenceCursor(OCCURRENCE_CURSOR_PREFIX, query.cursor) : undefined;
  const rows = await listOccurrences(ctx.db, { scheduleId: query.scheduleId, beforeId, limit: query.limit });
  const { items, nextCursor } = toSequencePage(rows, query.limit, OCCURRENCE_CURSOR_PREFIX);
  return { occurrences: items, nextCursor };
}
