// Due schedules: each message fires one schedule (decides overlap/missed, starts the run, moves the
// schedule on). One schedule failing does not stop the others; its lease runs out and a later tick
// sends it again, and the occurrence's Idempotency-Key makes the redo find the run made the first time.
import { claimDueSchedules, releaseSchedules, type Schedule, takeDueSchedule } from "../../db/schedules";
import { fireSchedule } from "../../services/schedule-firing";
import { addMs, FIRE_LEASE_MS } from "../../services/timing";
import { COST } from "../costs";
import type { WorkJob } from "../work";

export const fireSchedulesJob: WorkJob<Schedule> = {
  name: "fire_schedules",
  queue: "work",
  outcomes: ["fired", "skipped_overlap", "skipped_missed", "failed"],
  cost: COST.fire_schedules,
  claim: (ctx, now, leaseUntil, limit) =>
    claimDueSchedules(ctx.db, now.toISOString(), leaseUntil.toISOString(), limit),
  take: (ctx, id, lease, now) =>
    takeDueSchedule(ctx.db, id, now.toISOString(), addMs(now, FIRE_LEASE_MS).toISOString(), lease),
  release: (ctx, held, at, now) =>
    releaseSchedules(ctx.db, held, at.toISOString(), addMs(now, FIRE_LEASE_MS).toISOString()),
  work: async (ctx, schedule, now) => {
    const result = await fireSchedule(ctx, schedule, now);
    return { outcomes: result.outcomes.filter((o) => o !== "triggered") };
  },
};
