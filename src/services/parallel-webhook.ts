// Handling a verified Parallel webhook: de-duplicate on webhook-id, find the run, record its
// terminal status, answer at once, and fetch the result after the response.
import { z } from "zod";
import { insertRunEvent } from "../db/run-events";
import { findWebhookEvent, recordWebhookEvent } from "../db/webhook-events";
import { ApiError } from "../errors";
import {
  applyParallelStatus,
  claimAndFetchResult,
  findRunForParallelState,
  ParallelRunStateSchema,
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
  if (await findWebhookEvent(ctx.db, webhook.id)) {
    ctx.log.info("webhook.duplicate", { webhook_id: webhook.id });
    return { outcome: "duplicate", run_id: null };
  }
  const at = ctx.now().toISOString();
  const payload = WebhookPayloadSchema.safeParse(parseJson(webhook.body));
  const state = payload.success ? ParallelRunStateSchema.safeParse(payload.data.data) : null;
  if (!payload.success || payload.data.type !== "task_run.status" || !state?.success) {
    // Signed by Parallel but not an event taskrelay acts on: remember it and let Parallel stop retrying.
    await recordWebhookEvent(ctx.db, {
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
    return { outcome: "ignored", run_id: null };
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
    await record.run();
    ctx.log.warn("webhook.unknown_run", { webhook_id: webhook.id, parallel_run_id: state.data.run_id });
    return { outcome: "unknown_run", run_id: null };
  }

  const { run, changed } = await applyParallelStatus(ctx, found.run, state.data, "webhook", {
    webhook_id: webhook.id,
    matched_by: found.matchedBy,
  });
  await ctx.db.batch([
    record,
    insertRunEvent(ctx.db, run.id, at, "webhook_received", {
      webhook_id: webhook.id,
      status: state.data.status,
      matched_by: found.matchedBy,
      changed,
    }),
  ]);
  if (run.status === "completed" && !run.result_stored_at) {
    ctx.waitUntil(
      claimAndFetchResult(ctx, run.id).catch((error) =>
        ctx.log.error("run.result_fetch_error", { run_id: run.id, error: String(error) }),
      ),
    );
  }
  return { outcome: changed ? "applied" : "already_applied", run_id: run.id };
}

function parseJson(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    throw new ApiError("invalid_json", "The webhook body is not valid JSON.");
  }
}
