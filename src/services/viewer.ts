// What a dashboard viewer may see and do: one API key sees its own runs, schedules and deliveries;
// the admin sees every key's. An admin action on a resource is done as the resource's owner, through
// the same owner-scoped verbs the API uses, so both paths keep one set of rules.
import { type Delivery, type DeliveryStatus, findDelivery } from "../db/deliveries";
import { findKey } from "../db/keys";
import { listRunEvents, type RunEvent } from "../db/run-events";
import { findRun, type Run, type RunStatus, type RunSummary } from "../db/runs";
import {
  findSchedule,
  listOccurrences,
  listScheduleNames,
  type Occurrence,
  type Schedule,
} from "../db/schedules";
import { ApiError } from "../errors";
import type { ServiceContext } from "./context";
import {
  type DeliveryWithAttempts,
  listOwnedDeliveries,
  listRunDeliveriesWithAttempts,
  retryDelivery,
} from "./deliveries";
import { listApiKeys } from "./keys";
import { readOutputStart } from "./outputs";
import type { PageRequest } from "./pages";
import { getOwnedRun, listOwnedRuns, type RunPage } from "./runs";
import { getOwnedSchedule, listOwnedSchedules, triggerSchedule, updateSchedule } from "./schedules";

export type Viewer = { kind: "key"; apiKeyId: string } | { kind: "admin" };

/** Whose resources a list shows: the key's own, or (null) every key's for the admin. */
const ownerOf = (viewer: Viewer): string | null => (viewer.kind === "key" ? viewer.apiKeyId : null);

export function listRunsFor(
  ctx: ServiceContext,
  viewer: Viewer,
  query: PageRequest & { status?: RunStatus | undefined },
): Promise<RunPage> {
  return listOwnedRuns(ctx, { ...query, apiKeyId: ownerOf(viewer) });
}

/** The run, if this viewer may see it (one read); not_found otherwise, exactly as an unknown id. */
export async function getRunFor(ctx: ServiceContext, viewer: Viewer, id: string): Promise<Run> {
  if (viewer.kind === "key") return getOwnedRun(ctx, viewer.apiKeyId, id);
  const run = await findRun(ctx.db, id);
  if (!run) throw new ApiError("not_found", `No run ${id}.`);
  return run;
}

/** How much of an output stored in R2 the run page shows; the rest is a download. */
export const OUTPUT_PREVIEW_BYTES = 64 * 1024;

export interface RunDetail {
  run: Run;
  timeline: RunEvent[];
  deliveries: DeliveryWithAttempts[];
  /** The run's schedule's name, by id (empty for a run without one, or whose schedule is deleted). */
  scheduleNames: Map<string, string>;
  /** An output too large for D1 (in R2): its first OUTPUT_PREVIEW_BYTES as text, and its size. */
  outputStart: { text: string; bytes: number } | null;
}

/** The run page shows this much of a timeline. */
const RUN_PAGE_TIMELINE_LIMIT = 100;

/**
 * A run with its timeline, its deliveries (each with every attempt), its schedule's name and, for an
 * output in R2, the start of it: the run row is read once.
 */
export async function getRunDetailFor(ctx: ServiceContext, viewer: Viewer, id: string): Promise<RunDetail> {
  const run = await getRunFor(ctx, viewer, id);
  const [timeline, deliveries, scheduleNames, outputStart] = await Promise.all([
    // The first page of the timeline (the API pages on).
    listRunEvents(ctx.db, id, { afterId: 0, limit: RUN_PAGE_TIMELINE_LIMIT }, run).then((rows) =>
      rows.slice(0, RUN_PAGE_TIMELINE_LIMIT),
    ),
    listRunDeliveriesWithAttempts(ctx, id),
    scheduleNamesFor(ctx, viewer, [run]),
    run.output_key
      ? readOutputStart(ctx.outputs, run.output_key, OUTPUT_PREVIEW_BYTES).then((text) => ({
          text,
          bytes: run.output_bytes ?? 0,
        }))
      : null,
  ]);
  return { run, timeline, deliveries, scheduleNames, outputStart };
}

export function listDeliveriesFor(
  ctx: ServiceContext,
  viewer: Viewer,
  query: PageRequest & { status?: DeliveryStatus | undefined },
): Promise<{ deliveries: Delivery[]; nextCursor: string | null }> {
  return listOwnedDeliveries(ctx, { ...query, apiKeyId: ownerOf(viewer) });
}

export async function retryDeliveryFor(ctx: ServiceContext, viewer: Viewer, id: string): Promise<Delivery> {
  if (viewer.kind === "key") return retryDelivery(ctx, viewer.apiKeyId, id);
  const delivery = await findDelivery(ctx.db, id);
  if (!delivery) throw new ApiError("not_found", `No delivery ${id}.`);
  return retryDelivery(ctx, delivery.api_key_id, id);
}

export function listSchedulesFor(
  ctx: ServiceContext,
  viewer: Viewer,
  query: PageRequest,
): Promise<{ schedules: Schedule[]; nextCursor: string | null }> {
  return listOwnedSchedules(ctx, { ...query, apiKeyId: ownerOf(viewer) });
}

async function scheduleOwner(ctx: ServiceContext, viewer: Viewer, id: string): Promise<string> {
  if (viewer.kind === "key") return viewer.apiKeyId;
  const schedule = await findSchedule(ctx.db, id);
  if (!schedule) throw new ApiError("not_found", `No schedule ${id}.`);
  return schedule.api_key_id;
}

/** A schedule with its newest runs and what its newest occurrences came to. */
export async function getScheduleDetailFor(
  ctx: ServiceContext,
  viewer: Viewer,
  id: string,
  limit: number,
): Promise<{ schedule: Schedule; runs: RunSummary[]; occurrences: Occurrence[] }> {
  const owner = await scheduleOwner(ctx, viewer, id);
  // One wait: the lists are read alongside the ownership check, and dropped if it fails.
  const [schedule, { runs }, occurrences] = await Promise.all([
    getOwnedSchedule(ctx, owner, id),
    listOwnedRuns(ctx, { apiKeyId: owner, scheduleId: id, limit }),
    listOccurrences(ctx.db, { scheduleId: id, limit }),
  ]);
  return { schedule, runs, occurrences: occurrences.slice(0, limit) };
}

/** Pauses (false) or resumes (true) a schedule, exactly as PATCH /v1/schedules/:id with `enabled`. */
export async function setScheduleEnabledFor(
  ctx: ServiceContext,
  viewer: Viewer,
  id: string,
  enabled: boolean,
): Promise<Schedule> {
  return updateSchedule(ctx, await scheduleOwner(ctx, viewer, id), id, { enabled });
}

/** Runs a schedule once now, exactly as POST /v1/schedules/:id/trigger. */
export async function triggerScheduleFor(ctx: ServiceContext, viewer: Viewer, id: string): Promise<Run> {
  const owner = await scheduleOwner(ctx, viewer, id);
  // The admin can see a revoked key's schedules, but nothing starts runs for a revoked key.
  if (viewer.kind !== "key" && (await findKey(ctx.db, owner))?.revoked_at) {
    throw new ApiError(
      "invalid_state",
      `Schedule ${id} belongs to a revoked API key; it does not run any more.`,
    );
  }
  return triggerSchedule(ctx, owner, id);
}

/** Key names by id, for the admin's views (which show whose each row is). */
export async function keyNames(ctx: ServiceContext, viewer: Viewer): Promise<Map<string, string>> {
  if (viewer.kind === "key") return new Map();
  return new Map((await listApiKeys(ctx)).map((key) => [key.id, key.name]));
}

/** The names of the schedules these runs came from, by id, as far as this viewer may see them. */
export async function scheduleNamesFor(
  ctx: ServiceContext,
  viewer: Viewer,
  runs: Array<Pick<Run, "schedule_id">>,
): Promise<Map<string, string>> {
  const ids = [...new Set(runs.flatMap((run) => (run.schedule_id ? [run.schedule_id] : [])))];
  const rows = await listScheduleNames(ctx.db, ids, ownerOf(viewer));
  return new Map(rows.map((row) => [row.id, row.name]));
}
