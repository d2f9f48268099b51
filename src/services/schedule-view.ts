// How a schedule is shown to its owner.
import type { Occurrence, Schedule } from "../db/schedules";
import type { ScheduleDetailView, ScheduleView } from "../schemas/schedules";
import { formatInZone, nextOccurrences } from "./schedule-times";

export const FIRE_TIMES_SHOWN = 5;

export function toScheduleView(s: Schedule): ScheduleView {
  return {
    id: s.id,
    name: s.name,
    cron: s.cron,
    timezone: s.timezone,
    template: s.template,
    callback: s.callback_url ? { url: s.callback_url } : null,
    overlap: s.overlap,
    missed: s.missed,
    notify: s.notify,
    chain_interactions: s.chain_interactions,
    enabled: s.enabled,
    next_run_at: s.next_run_at,
    last_run_id: s.last_run_id,
    last_fired_at: s.last_fired_at,
    last_success_run_id: s.last_success_run_id,
    last_success_at: s.last_success_at,
    created_at: s.created_at,
    updated_at: s.updated_at,
  };
}

/** The view plus the next five fire times, starting with next_run_at. */
export function toScheduleDetailView(s: Schedule): ScheduleDetailView {
  const times: Date[] = [];
  if (s.enabled && s.next_run_at) {
    const first = new Date(s.next_run_at);
    times.push(first, ...nextOccurrences(s.cron, s.timezone, first, FIRE_TIMES_SHOWN - 1));
  }
  return {
    ...toScheduleView(s),
    next_fire_times: times.map((at) => ({ utc: at.toISOString(), local: formatInZone(at, s.timezone) })),
  };
}

export function toOccurrenceView(o: Occurrence) {
  return {
    scheduled_at: o.scheduled_at,
    decided_at: o.decided_at,
    outcome: o.outcome,
    run_id: o.run_id,
    reason: o.reason,
  };
}
