// The minute tick's schedule job: claim due schedules with a lease, a bounded batch per tick, and
// fire each. One schedule failing does not stop the others; its lease runs out and a later tick
// retries it.
import { claimDueSchedules } from "../../db/schedules";
import { describeError } from "../../log";
import type { ServiceContext } from "../../services/context";
import { FIRE_LEASE_MS, fireSchedule } from "../../services/schedule-firing";
import { addMs } from "../../services/timing";
import type { JobSummary } from "../dispatcher";

export async function runFireSchedules(ctx: ServiceContext, now: Date, limit: number): Promise<JobSummary> {
  const claimed = await claimDueSchedules(
    ctx.db,
    now.toISOString(),
    addMs(now, FIRE_LEASE_MS).toISOString(),
    limit,
  );
  const summary = {
    claimed: claimed.length,
    fired: 0,
    skipped_overlap: 0,
    skipped_missed: 0,
    failed: 0,
    errors: 0,
  };
  for (const schedule of claimed) {
    try {
      const result = await fireSchedule(ctx, schedule, now);
      for (const outcome of result.outcomes) {
        if (outcome !== "triggered") summary[outcome] += 1;
      }
    } catch (error) {
      summary.errors += 1;
      ctx.log.error("schedule.fire_failed", { schedule_id: schedule.id, error: describeError(error) });
    }
  }
  return summary;
}
