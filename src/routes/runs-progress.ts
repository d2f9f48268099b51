import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import type { App } from "../app";
import type { Run } from "../db/runs";
import { describeError } from "../log";
import { requireApiKey } from "../middleware/auth";
import { API_KEY_SECURITY, errors } from "../schemas/common";
import type { ServiceContext } from "../services/context";
import { followRunProgress, progressRuntime } from "../services/run-progress";
import { getOwnedRun } from "../services/runs";
import { RunIdParam } from "./runs-get";

/** Tells EventSource how long to wait before it reconnects a stream that ended without `end`. */
export const PROGRESS_RETRY_MS = 2000;

const SSE_EXAMPLE = [
  "retry: 2000",
  "event: run",
  'data: {"id":"run_01JD0Q4M3ZT6B3X9Y8W7V6U5T4","status":"running","processor":"pro",…}',
  "",
  "event: task_run.progress_msg.plan",
  'data: {"type":"task_run.progress_msg.plan","message":"Planning research on EU battery makers","timestamp":"2026-11-28T10:31:02.114Z"}',
  "",
  "event: task_run.progress_stats",
  'data: {"type":"task_run.progress_stats","progress_meter":35,"source_stats":{"num_sources_considered":120,"num_sources_read":15,"sources_read_sample":["https://…"]}}',
  "",
  ": keep-alive",
  "",
  "event: end",
  'data: {"id":"run_01JD0Q4M3ZT6B3X9Y8W7V6U5T4","status":"completed","result_available":true,…}',
  "",
].join("\n");

export const runProgressRoute = createRoute({
  method: "get",
  path: "/v1/runs/{id}/progress",
  summary: "Follow a run's progress (server-sent events)",
  description: [
    "A `text/event-stream` of the run's progress, relayed from Parallel's run events. Events:",
    "",
    "- `run`: the run as `GET /v1/runs/{id}` shows it; first, and again whenever its status changes.",
    "- `task_run.progress_stats`: `{progress_meter (0–100), source_stats: {num_sources_considered, num_sources_read, sources_read_sample}}`.",
    "- `task_run.progress_msg.plan|search|result|tool_call|exec_status`: `{message, timestamp}`, the reasoning trace. " +
      "Below `pro`, Parallel sends few of these unless the run was created with `enable_events: true`.",
    "- `end`: the run, finished (and, when completed, with its result stored: fetch it from `/result`). The last event.",
    "",
    "Comment lines (`: keep-alive`) keep idle connections open. For a run that is already finished the stream is `run` " +
      "then `end`. A run still `submitting` has no Parallel run yet: the stream sends `run` and waits for it.",
    "",
    "**Resuming.** Parallel closes a run's event stream after about 570 seconds and its streams cannot be resumed: " +
      "each connection replays the whole reasoning trace and the latest stats. While the run is active taskrelay " +
      "connects to Parallel again by itself and drops what it already relayed on this connection, so you see each " +
      "message once. One connection to taskrelay is served for at most 30 minutes (or 40 connections to Parallel); " +
      "a stream that ends without `end` should be opened again (EventSource does so by itself after the `retry` " +
      "delay). A new connection starts over: " +
      "`run`, then the trace so far.",
  ].join("\n"),
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: { params: RunIdParam },
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

/**
 * Streams a run's progress as server-sent events: the API route's and the dashboard's (which
 * authenticates with its session cookie, since EventSource cannot send an Authorization header).
 */
export function streamRunProgress(c: Context, ctx: ServiceContext, run: Run): Response {
  const runtime = progressRuntime(ctx.config.TIME_SCALE);
  return streamSSE(
    c,
    async (stream) => {
      const abort = new AbortController();
      stream.onAbort(() => abort.abort());
      const keepAlive = setInterval(() => {
        void stream.write(": keep-alive\n\n");
      }, runtime.keepAliveMs);
      let first = true;
      try {
        for await (const event of followRunProgress(ctx, run, abort.signal, runtime)) {
          await stream.writeSSE({
            event: event.event,
            data: JSON.stringify(event.data),
            ...(first ? { retry: PROGRESS_RETRY_MS } : {}),
          });
          first = false;
          if (stream.aborted) break;
        }
      } catch (error) {
        // Never shown to the client (streamSSE would write the message as an event): logged, and the
        // stream ends without `end`, so the client reconnects.
        ctx.log.error("progress.failed", { run_id: run.id, error: describeError(error) });
      } finally {
        clearInterval(keepAlive);
        abort.abort();
      }
    },
    async (error) => {
      ctx.log.error("progress.failed", { run_id: run.id, error: describeError(error) });
    },
  );
}

export function registerRunProgress(app: App) {
  app.openapi(runProgressRoute, async (c) => {
    const ctx = c.var.services;
    const run = await getOwnedRun(ctx, c.var.apiKey.id, c.req.valid("param").id);
    return streamRunProgress(c, ctx, run);
  });
}
