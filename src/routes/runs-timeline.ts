import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireApiKey } from "../middleware/auth";
import { API_KEY_SECURITY, CursorQuerySchema, errors, LimitQuerySchema } from "../schemas/common";
import { TimelineSchema } from "../schemas/runs";
import { getRunTimeline } from "../services/runs";
import { RunIdParam } from "./runs-get";

export const getRunTimelineRoute = createRoute({
  method: "get",
  path: "/v1/runs/{id}/timeline",
  summary: "What happened to a run, and when",
  description:
    "Stored, submitted (and each submission retry), webhooks received with their ids, polls, result fetched, expiry, deliveries.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: { params: RunIdParam, query: z.object({ limit: LimitQuerySchema, cursor: CursorQuerySchema }) },
  responses: {
    200: {
      description: "A page of the run's events, oldest first; `next_cursor` continues after it.",
      content: { "application/json": { schema: TimelineSchema } },
    },
    401: errors[401],
    404: errors[404],
    500: errors[500],
  },
});

export function registerRunTimeline(app: App) {
  app.openapi(getRunTimelineRoute, async (c) => {
    const id = c.req.valid("param").id;
    const page = await getRunTimeline(c.var.services, c.var.apiKey.id, id, c.req.valid("query"));
    return c.json({ run_id: id, events: page.events, next_cursor: page.nextCursor }, 200);
  });
}
