// How a delivery is shown to its owner: no lease, no key id.
import type { Delivery, DeliveryAttempt } from "../db/deliveries";
import type { DeliveryView } from "../schemas/deliveries";

export function toDeliveryView(delivery: Delivery): DeliveryView {
  return {
    id: delivery.id,
    run_id: delivery.run_id,
    batch_id: delivery.batch_id ?? null,
    event: delivery.event,
    url: delivery.url,
    status: delivery.status,
    series: delivery.series,
    attempt_count: delivery.attempt_count,
    next_attempt_at: delivery.next_attempt_at,
    last_attempt_at: delivery.last_attempt_at,
    last_status_code: delivery.last_status_code,
    last_error: delivery.last_error,
    created_at: delivery.created_at,
    updated_at: delivery.updated_at,
  };
}

export function toAttemptView(attempt: DeliveryAttempt) {
  return {
    series: attempt.series,
    attempt: attempt.attempt,
    attempted_at: attempt.attempted_at,
    status_code: attempt.status_code,
    latency_ms: attempt.latency_ms,
    error: attempt.error,
  };
}
