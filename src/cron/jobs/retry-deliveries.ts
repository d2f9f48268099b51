// Callback deliveries whose next attempt is due: the retries too far off for the invocation that
// made the first attempt (5 min and later at scale 1), and any delivery whose worker died mid-attempt
// (its lease ran out). From the queue, a failed attempt's next retry within Queues' 12 h delay keeps
// the lease and is a delayed message, so the backoff schedule (5 s, 5 min, 30 min, 2 h, …) is kept
// to the second; a longer wait (a receiver's Retry-After is capped at an hour, so none today) would
// be left to the cron tick.
import { claimDelivery, claimDueDeliveries, type Delivery, releaseDeliveries } from "../../db/deliveries";
import { attemptDelivery, DEFAULT_DELIVERY_RUNTIME, type DeliveryRuntime } from "../../services/deliveries";
import { addMs, DELIVERY_LEASE_MS, MAX_MESSAGE_DELAY_MS } from "../../services/timing";
import { COST } from "../costs";
import type { WorkJob } from "../work";

export function retryDeliveriesJob(
  runtime: DeliveryRuntime = DEFAULT_DELIVERY_RUNTIME,
  /** A retry due within this keeps the lease and comes back as a delayed message. */
  holdUpToMs = MAX_MESSAGE_DELAY_MS,
): WorkJob<Delivery> {
  return {
    name: "retry_deliveries",
    queue: "deliveries",
    outcomes: ["succeeded", "retrying", "dead", "lease_lost"],
    cost: COST.retry_deliveries,
    claim: (ctx, now, leaseUntil, limit) =>
      claimDueDeliveries(ctx.db, now.toISOString(), leaseUntil.toISOString(), limit),
    take: (ctx, id, lease, now) =>
      claimDelivery(ctx.db, id, now.toISOString(), addMs(now, DELIVERY_LEASE_MS).toISOString(), lease),
    release: (ctx, held, at, now) =>
      releaseDeliveries(ctx.db, held, at.toISOString(), addMs(now, DELIVERY_LEASE_MS).toISOString()),
    work: async (ctx, delivery) => {
      const recorded = await attemptDelivery(ctx, delivery, runtime, { holdUpToMs });
      if (!recorded) return { outcomes: ["lease_lost"] };
      if (recorded.status !== "pending") return { outcomes: [recorded.status] };
      const held = recorded.lease_until && recorded.next_attempt_at;
      return {
        outcomes: ["retrying"],
        ...(held
          ? { later: { at: recorded.next_attempt_at as string, lease: recorded.lease_until as string } }
          : {}),
      };
    },
  };
}
