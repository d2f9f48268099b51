// Callback deliveries whose next attempt is due: the retries too far off for the invocation that
// made the first attempt (5 min and later at scale 1), and any delivery whose worker died mid-attempt
// (its lease ran out). Claimed with a lease, due first, a bounded batch per tick, sent concurrently.
import { claimDueDeliveries } from "../../db/deliveries";
import { describeError } from "../../log";
import type { ServiceContext } from "../../services/context";
import { attemptDelivery, DEFAULT_DELIVERY_RUNTIME, type DeliveryRuntime } from "../../services/deliveries";
import { DELIVERY_LEASE_MS } from "../../services/delivery-schedule";
import { addMs } from "../../services/timing";

export async function runRetryDeliveries(
  ctx: ServiceContext,
  now: Date,
  limit: number,
  runtime: DeliveryRuntime = DEFAULT_DELIVERY_RUNTIME,
) {
  const claimed = await claimDueDeliveries(
    ctx.db,
    now.toISOString(),
    addMs(now, DELIVERY_LEASE_MS).toISOString(),
    limit,
  );
  // Each attempt waits on a receiver for up to 15 s: in parallel, a tick takes one timeout, not ten.
  const settled = await Promise.allSettled(
    claimed.map((delivery) => attemptDelivery(ctx, delivery, runtime, { holdForShortRetry: false })),
  );
  const summary = { claimed: claimed.length, succeeded: 0, retrying: 0, dead: 0, lease_lost: 0, errors: 0 };
  for (const [index, outcome] of settled.entries()) {
    if (outcome.status === "rejected") {
      // Its lease runs out and a later tick tries again.
      summary.errors++;
      ctx.log.error("delivery.attempt_error", {
        delivery_id: claimed[index]?.id,
        error: describeError(outcome.reason),
      });
    } else if (!outcome.value) summary.lease_lost++;
    else if (outcome.value.status === "succeeded") summary.succeeded++;
    else if (outcome.value.status === "dead") summary.dead++;
    else summary.retrying++;
  }
  return summary;
}
