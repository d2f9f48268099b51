import { createRoute, z } from "@hono/zod-openapi";
import { streamSSE } from "hono/streaming";
import type { App } from "../app";
import { findBatch } from "../db/batches";
import { describeError } from "../log";
import { requireApiKey } from "../middleware/auth";
import { API_KEY_SECURITY, errors } from "../schemas/common";
import { batchView, getOwnedBatch, unfinished } from "../services/batches";
import { BatchIdParam } from "./batches-get";
import { PROGRESS_RETRY_MS } from "./runs-progress";

/** How often the counts are read (scaled with TIME_SCALE, never below 250 ms). */
const POLL_MS = 2000;
/** A comment line at least this often, so idle proxies keep the connection. */
const KEEP_ALIVE_MS = 15_000;
/** The reads one pass costs (the batch's row, its counts on it), reserved before it starts. */
const PASS_QUERIES = 1;

const SSE_EXAMPLE = [
  "retry: 2000",
  "event: batch",
  'data: {"id":"bat_01JD0Q4M3ZT6B3X9Y8W7V6U5T4","status":"running","counts":{"total":10000,"submitting":0,"queued":4200,"running":0,"completed":5790,"failed":10,…},"eta_at":"2026-11-28T10:33:00.000Z",…}',
  "",
  ": keep-alive",
  "",
  "event: end",
  'data: {"id":"bat_01JD0Q4M3ZT6B3X9Y8W7V6U5T4","status":"completed","counts":{"total":10000,…},…}',
  "",
].join("\n");

export const batchProgressRoute = createRoute({
  method: "get",
  path: "/v1/batches/{id}/progress",
  summary: "Follow a batch's counts (server-sent events)",
  description: [
    "A `text/event-stream` of the batch as GET /v1/batches/{id} shows it. Events:",
    "",
    "- `batch`: the batch with its counts; first, and again whenever its status or counts change (read every 2 s).",
    "- `end`: the batch, closed with every run finished (or cancelled with every run at Parallel finished). The last event.",
    "",
    "One connection is served for as long as the Worker's per-invocation budget allows (one read a pass); a stream " +
      "that ends without `end` should be opened again (EventSource does so by itself after the `retry` delay).",
  ].join("\n"),
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: { params: BatchIdParam },
  responses: {
    200: {
      description: "The event stream.",
      content: { "text/event-stream": { schema: z.string().openapi({ example: SSE_EXAMPLE }) } },
    },
    401: errors[401],
    404: errors[404],
    500: errors[500],
  },
});

export function registerBatchProgress(app: App) {
  app.openapi(batchProgressRoute, async (c) => {
    const ctx = c.var.services;
    const apiKeyId = c.var.apiKey.id;
    let batch = await getOwnedBatch(ctx, apiKeyId, c.req.valid("param").id);
    const pollMs = Math.max(250, POLL_MS * ctx.config.TIME_SCALE);
    return streamSSE(
      c,
      async (stream) => {
        let last = "";
        let quietSince = Date.now();
        let first = true;
        try {
          while (!stream.aborted) {
            const view = batchView(ctx, batch);
            const { updated_at: _changesOften, eta_at: _moves, ...shown } = view;
            const text = JSON.stringify(shown);
            const ended =
              view.closed_at !== null && unfinished(view.counts) === 0 && view.status !== "submitting";
            if (text !== last || ended) {
              await stream.writeSSE({
                event: ended ? "end" : "batch",
                data: JSON.stringify(view),
                ...(first ? { retry: PROGRESS_RETRY_MS } : {}),
              });
              first = false;
              last = text;
              quietSince = Date.now();
            } else if (Date.now() - quietSince >= KEEP_ALIVE_MS) {
              await stream.write(": keep-alive\n\n");
              quietSince = Date.now();
            }
            // Out of reads for this invocation: end without `end`, and the client reconnects.
            if (ended || ctx.usage.d1_queries + PASS_QUERIES > ctx.config.SUBREQUEST_BUDGET) break;
            await stream.sleep(pollMs);
            const fresh = await findBatch(ctx.db, batch.id, apiKeyId);
            if (!fresh) break;
            batch = fresh;
          }
        } catch (error) {
          ctx.log.error("batch_progress.failed", { batch_id: batch.id, error: describeError(error) });
        }
      },
      async (error) => {
        ctx.log.error("batch_progress.failed", { batch_id: batch.id, error: describeError(error) });
      },
    );
  });
}
