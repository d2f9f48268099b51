// Which occurrence of its schedule a run stands for. The occurrence is written into the run's
// Idempotency-Key when the run is made, so it is known exactly when the run finishes, and a tick
// redone after a crash finds the run it made instead of making a second one.
import type { Run } from "../db/runs";

export function occurrenceIdempotencyKey(scheduleId: string, scheduledAt: string, triggered = false): string {
  return `schedule:${scheduleId}:${triggered ? "trigger:" : ""}${scheduledAt}`;
}

/** The occurrence (ISO UTC) a scheduled run stands for; its creation time when the key says nothing. */
export function occurrenceOfRun(run: Pick<Run, "schedule_id" | "idempotency_key" | "created_at">): string {
  const prefix = `schedule:${run.schedule_id}:`;
  if (!run.idempotency_key?.startsWith(prefix)) return run.created_at;
  return run.idempotency_key.slice(prefix.length).replace(/^trigger:/, "");
}
