// Parallel's completion webhooks as the bench fires them at the relay itself (the ingestion and burst
// measurements), signed the way Parallel signs them (Standard Webhooks, raw secret).
import { Webhook } from "standardwebhooks";

/** The secret the bench's stacks give the relay as PARALLEL_WEBHOOK_SECRET. */
export const BENCH_WEBHOOK_SECRET = "bench-webhook-secret";

const signer = new Webhook(BENCH_WEBHOOK_SECRET, { format: "raw" });

/** One signed webhook: its body and the headers Parallel sends with it. */
export function signedParallelWebhook(
  id: string,
  body: string,
): { body: string; headers: Record<string, string> } {
  const timestamp = Math.floor(Date.now() / 1000);
  return {
    body,
    headers: {
      "content-type": "application/json",
      "webhook-id": id,
      "webhook-timestamp": String(timestamp),
      "webhook-signature": signer.sign(id, new Date(timestamp * 1000), body),
    },
  };
}
