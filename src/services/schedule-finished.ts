// What a finished scheduled run means for its schedule: whether its output changed since the
// schedule's last success (stored on the run as output_changed), the new last success (its time,
// interaction and output hash feed the next run's placeholders, chaining and comparison), and
// whether its callback should be sent (notify: on_change holds back an unchanged output).
import { canonicalJson } from "../canonical-json";
import type { Run } from "../db/runs";
import { findSchedule, recordScheduledRunOutcome } from "../db/schedules";
import { sha256Hex } from "../ids";
import type { ServiceContext } from "./context";
import { storedOutputDigest } from "./outputs";
import { occurrenceOfRun } from "./schedule-occurrence";

/**
 * Called once per finished run with a schedule_id, before its callback; returns the run as updated. A run without a result
 * (failed, rejected, expired…) is always notified and compared with nothing. Without its schedule
 * (deleted meanwhile) the run is simply notified.
 */
export async function onScheduledRunFinished(
  ctx: ServiceContext,
  run: Run,
): Promise<{ notify: boolean; run: Run }> {
  if (!run.schedule_id) return { notify: true, run };
  const schedule = await findSchedule(ctx.db, run.schedule_id);
  if (!schedule) return { notify: true, run };
  const completed = run.status === "completed";
  const content = completed ? run.output?.content : undefined;
  // An output in R2 is compared by the digest of its stored JSON (content and basis), streamed, so
  // a large output is never parsed here.
  const outputHash =
    completed && run.output_key
      ? await storedOutputDigest(ctx.outputs, run.output_key)
      : content === undefined
        ? null
        : await sha256Hex(canonicalJson(content));
  if (outputHash === null) return { notify: true, run };

  const computed = schedule.last_output_hash !== outputHash;
  const stored = await recordScheduledRunOutcome(ctx.db, run.id, ctx.now().toISOString(), {
    outputChanged: computed,
    success: {
      scheduleId: schedule.id,
      scheduledAt: occurrenceOfRun(run),
      interactionId: run.interaction_id,
      outputHash,
    },
  });
  const outputChanged = stored ?? computed;
  const notify = schedule.notify === "always" || outputChanged;
  ctx.log.info("schedule.run_finished", {
    schedule_id: schedule.id,
    run_id: run.id,
    output_changed: outputChanged,
    notify,
  });
  // The run as now stored, so its callback shows output_changed.
  return { notify, run: { ...run, output_changed: outputChanged } };
}
