import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireApiKey } from "../middleware/auth";
import { API_KEY_SECURITY, CursorQuerySchema, errors, LimitQuerySchema } from "../schemas/common";
import { OccurrenceListSchema } from "../schemas/schedules";
import { toOccurrenceView } from "../services/schedule-view";
import { listScheduleOccurrences } from "../services/schedules";
import { ScheduleIdParam } from "./schedules-get";

export const listScheduleOccurrencesRoute = createRoute({
  method: "get",
  path: "/v1/schedules/{id}/occurrences",
  summary: "What each of a schedule's occurrences came to",
  description:
    "Newest first: fired (with its run), triggered by hand, skipped because the previous run was still in flight " +
    "(overlap: skip) or because it was missed (missed: skip), or failed (no run could be made; see reason).",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: {
    params: ScheduleIdParam,
    query: z.object({ limit: LimitQuerySchema, cursor: CursorQuerySchema }),
  },
  responses: {
    200: {
      description: "A page of occurrences.",
      content: { "application/json": { schema: OccurrenceListSchema } },
    },
    401: errors[401],
    404: errors[404],
    422: errors[422],
    500: errors[500],
  },
});

export function registerScheduleOccurrences(app: App) {
  app.openapi(listScheduleOccurrencesRoute, async (c) => {
    const page = await listScheduleOccurrences(c.var.services, {
      apiKeyId: c.var.apiKey.id,
      scheduleId: c.req.valid("param").id,
      ...c.req.valid("query"),
    });
    return c.json({ data: page.occurrences.map(toOccurrenceView), next_cursor: page.nextCursor }, 200);
  });
}
