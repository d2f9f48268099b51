import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireApiKey } from "../middleware/auth";
import { API_KEY_SECURITY, CursorQuerySchema, errors, LimitQuerySchema } from "../schemas/common";
import { ScheduleListSchema } from "../schemas/schedules";
import { toScheduleView } from "../services/schedule-view";
import { listOwnedSchedules } from "../services/schedules";

export const listSchedulesRoute = createRoute({
  method: "get",
  path: "/v1/schedules",
  summary: "List your schedules",
  description: "Newest first. Pass `next_cursor` back as `cursor` for the next page.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: { query: z.object({ limit: LimitQuerySchema, cursor: CursorQuerySchema }) },
  responses: {
    200: {
      description: "A page of schedules.",
      content: { "application/json": { schema: ScheduleListSchema } },
    },
    401: errors[401],
    422: errors[422],
    500: errors[500],
  },
});

export function registerScheduleList(app: App) {
  app.openapi(listSchedulesRoute, async (c) => {
    const page = await listOwnedSchedules(c.var.services, {
      apiKeyId: c.var.apiKey.id,
      ...c.req.valid("query"),
    });
    return c.json({ data: page.schedules.map(toScheduleView), next_cursor: page.nextCursor }, 200);
  });
}
