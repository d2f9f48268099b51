// Handling a verified Parallel webhook: find the run, then in one D1 batch remember the webhook-id,
// record its terminal status and claim the result fetch (one write of the run); answer at once, and fetch the result
// after the response. A repeated webhook-id finds everything already done and does nothing twice.
import { z } from "zod";
import { runEvent } from "../db/run-events";
import { recordWebhookEvent } from "../db/webhook-events";
import { ApiError } from "../errors";
import {
  applyParallelStatus,
  fetchClaimedResult,
  findRunForParallelState,
  isKnownParallelStatus,
  ParallelRunStateSchema,
  warnUnknownStatus,
} from "./completion";
import type { ServiceContext } from "./context";

const WebhookPayloadSchema = z.looseObject({
  type: z.string(),
  timestamp: z.string().optional(),
  data: z.unknown(),
});

export type WebhookOutcome = "duplicate" | "ignored" | "unknown_run" | "applied" | "already_applied";

export interface WebhookReceipt {
  outcome: WebhookOutcome;
  run_id: string | null;
}

export async function receiveParallelWebhook(
  ctx: ServiceContext,
  webhook: { id: string; body: string },
): Promise<WebhookReceipt> {
  const now = ctx.now();
  const at = now.toISOString();
  const payload = WebhookPayloadSchema.safeParse(parseJson(webhook.body));
  const state = payload.success ? ParallelRunStateSchema.safeParse(payload.data.data) : null;
  if (!payload.success || payload.data.type !== "task_run.status" || !state?.success) {
    // Signed by Parallel but not an event taskrelay acts on: remember it and let Parallel stop retrying.
    const recorded = await recordWebhookEvent(ctx.db, {
      webhookId: webhook.id,
      parallelRunId: null,
      runId: null,
      status: null,
      receivedAt: at,
    }).run();
    ctx.log.warn("webhook.ignored", {
      webhook_id: webhook.id,
      type: payload.success ? payload.data.type : null,
    });
    return { outcome: recorded.meta.changes === 0 ? "duplicate" : "ignored", run_id: null };
  }

  const found = await findRunForParallelState(ctx, state.data);
  const record = recordWebhookEvent(ctx.db, {
    webhookId: webhook.id,
    parallelRunId: state.data.run_id,
    runId: found?.run.id ?? null,
    status: state.data.status,
    receivedAt: at,
  });
  if (!found) {
    const recorded = await record.run();
    ctx.log.warn("webhook.unknown_run", { webhook_id: webhook.id, parallel_run_id: state.data.run_id });
    return { outcome: recorded.meta.changes === 0 ? "duplicate" : "unknown_run", run_id: null };
  }

  const { run } = found;
  if (!isKnownParallelStatus(state.data.status)) warnUnknownStatus(ctx, run, state.data.status);
  // One round trip: status (guarded: a finished run is left alone), webhook-id, the webhook on the
  // timeline, and the result-fetch claim; the result is fetched and the run finished after the 200.
  const applied = await applyParallelStatus(ctx, run, state.data, "webhook", {
    detail: { webhook_id: webhook.id, matched_by: found.matchedBy },
    // The webhook-id first: a duplicate changes nothing and is on the timeline once.
    receipt: {
      record,
      event: runEvent(at, "webhook_received", {
        webhook_id: webhook.id,
        status: state.data.status,
        matched_by: found.matchedBy,
      }),
    },
    claimResult: true,
    finishInBackground: true,
  });
  const duplicate = applied.receipt?.meta.changes === 0;
  if (applied.claimed) ctx.waitUntil(fetchClaimedResult(ctx, applied.claimed));
  return {
    outcome: duplicate ? "duplicate" : applied.changed ? "applied" : "already_applied",
    run_id: run.id,
  };
}

function parseJson(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    throw new ApiError("invalid_json", "The webhook body is not valid JSON.");
  }
}
