import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireApiKey } from "../middleware/auth";
import { API_KEY_SECURITY, CursorQuerySchema, errors, LimitQuerySchema } from "../schemas/common";
import { RunListSchema } from "../schemas/runs";
import { toRunView } from "../services/run-view";
import { listScheduleRuns } from "../services/schedules";
import { ScheduleIdParam } from "./schedules-get";

export const listScheduleRunsRoute = createRoute({
  method: "get",
  path: "/v1/schedules/{id}/runs",
  summary: "List a schedule's runs",
  description:
    "Newest first, fired and triggered alike. Pass `next_cursor` back as `cursor` for the next page.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: {
    params: ScheduleIdParam,
    query: z.object({ limit: LimitQuerySchema, cursor: CursorQuerySchema }),
  },
  responses: {
    200: { description: "A page of runs.", content: { "application/json": { schema: RunListSchema } } },
    401: errors[401],
    404: errors[404],
    422: errors[422],
    500: errors[500],
  },
});

export function registerScheduleRuns(app: App) {
  app.openapi(listScheduleRunsRoute, async (c) => {
    const page = await listScheduleRuns(c.var.services, {
      apiKeyId: c.var.apiKey.id,
      scheduleId: c.req.valid("param").id,
      ...c.req.valid("query"),
    });
    return c.json({ data: page.runs.map(toRunView), next_cursor: page.nextCursor }, 200);
  });
}
