// Handling a verified Parallel webhook: find the run, then in one D1 batch record its terminal
// status, claim the result fetch, and remember the webhook-id; answer at once, and fetch the result
// after the response. A repeated webhook-id finds everything already done and does nothing twice.
import { z } from "zod";
import { insertRunEventIfChanged } from "../db/run-events";
import { changeRunStatements, claimResultFetchStatement, returnedRun } from "../db/runs";
import { recordWebhookEvent } from "../db/webhook-events";
import { ApiError } from "../errors";
import {
  fetchAndStoreResult,
  findRunForParallelState,
  finishesWithoutResult,
  isKnownParallelStatus,
  NOT_FINISHED,
  ParallelRunStateSchema,
  statusChanges,
  warnUnknownStatus,
} from "./completion";
import type { ServiceContext } from "./context";
import { onRunFinished } from "./run-finished";
import { addMs, LEASE_MS } from "./timing";

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
  const completed = state.data.status === "completed";
  const detail = {
    source: "webhook",
    from: run.status,
    to: state.data.status,
    webhook_id: webhook.id,
    matched_by: found.matchedBy,
  };
  // One round trip: status (guarded: a finished run is left alone), result-fetch claim, webhook-id, timeline.
  const results = await ctx.db.batch([
    ...changeRunStatements(
      ctx.db,
      run,
      at,
      statusChanges(ctx.config, run, state.data, now),
      { kind: "status_changed", detail },
      NOT_FINISHED,
    ),
    record,
    // Only for a webhook-id not seen before: a duplicate is recorded once.
    insertRunEventIfChanged(ctx.db, run.id, at, "webhook_received", {
      webhook_id: webhook.id,
      status: state.data.status,
      matched_by: found.matchedBy,
    }),
    ...(completed ? [claimResultFetchStatement(ctx.db, run.id, at, addMs(now, LEASE_MS).toISOString())] : []),
  ]);
  const updated = returnedRun(results[0]);
  const claimed = completed ? returnedRun(results[4]) : null;
  const duplicate = results[2]?.meta.changes === 0;

  if (updated)
    ctx.log.info("run.status", { run_id: run.id, from: run.status, to: updated.status, source: "webhook" });
  if (updated && finishesWithoutResult(updated.status)) ctx.waitUntil(onRunFinished(ctx, updated));
  if (claimed) ctx.waitUntil(fetchAndStoreResult(ctx, claimed));
  return { outcome: duplicate ? "duplicate" : updated ? "applied" : "already_applied", run_id: run.id };
}

function parseJson(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    throw new ApiError("invalid_json", "The webhook body is not valid JSON.");
  }
}
