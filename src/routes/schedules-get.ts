import { createRoute } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireApiKey } from "../middleware/auth";
import { API_KEY_SECURITY, errors, IdParamSchema } from "../schemas/common";
import { ScheduleWithSpendSchema } from "../schemas/schedules";
import { toScheduleDetailView } from "../services/schedule-view";
import { getOwnedSchedule } from "../services/schedules";
import { getScopeSpend } from "../services/spend";

export const ScheduleIdParam = IdParamSchema("sch", "sch_01JD0Q4M3ZT6B3X9Y8W7V6U5T4");

export const getScheduleRoute = createRoute({
  method: "get",
  path: "/v1/schedules/{id}",
  summary: "Get a schedule",
  description:
    "Includes the next five fire times, in UTC and in the schedule's time zone, and `spend`: what its runs cost (those Parallel accepted).",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: { params: ScheduleIdParam },
  responses: {
    200: {
      description: "The schedule.",
      content: { "application/json": { schema: ScheduleWithSpendSchema } },
    },
    401: errors[401],
    404: errors[404],
    500: errors[500],
  },
});

export function registerScheduleGet(app: App) {
  app.openapi(getScheduleRoute, async (c) => {
    const schedule = await getOwnedSchedule(c.var.services, c.var.apiKey.id, c.req.valid("param").id);
    const spend = await getScopeSpend(c.var.services, schedule);
    return c.json({ ...toScheduleDetailView(schedule), spend }, 200);
  });
}
