// Works through a job's claimed rows concurrently (a tick then takes about one slow call, not the
// sum of them) and counts the outcomes. A step that throws is counted as an error and logged; its
// lease runs out and a later tick redoes it.
import { describeError } from "../log";
import type { ServiceContext } from "../services/context";

export async function processClaimed<T extends { id: string }, Outcome extends string>(
  ctx: ServiceContext,
  job: string,
  claimed: T[],
  step: (item: T) => Promise<Outcome>,
): Promise<Record<Outcome | "claimed" | "errors", number>> {
  const summary = { claimed: claimed.length, errors: 0 } as Record<Outcome | "claimed" | "errors", number>;
  const settled = await Promise.allSettled(claimed.map(step));
  for (const [index, result] of settled.entries()) {
    if (result.status === "fulfilled") {
      summary[result.value] = (summary[result.value] ?? 0) + 1;
    } else {
      summary.errors++;
      ctx.log.error("cron.step_error", { job, id: claimed[index]?.id, error: describeError(result.reason) });
    }
  }
  return summary;
}
