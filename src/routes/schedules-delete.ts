import { createRoute } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireApiKey } from "../middleware/auth";
import { API_KEY_SECURITY, errors } from "../schemas/common";
import { deleteSchedule } from "../services/schedules";
import { ScheduleIdParam } from "./schedules-get";

export const deleteScheduleRoute = createRoute({
  method: "delete",
  path: "/v1/schedules/{id}",
  summary: "Delete a schedule",
  description:
    "It fires no more. Its runs are kept, with their schedule_id; runs in flight finish and are delivered as usual.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: { params: ScheduleIdParam },
  responses: {
    204: { description: "Deleted." },
    401: errors[401],
    404: errors[404],
    500: errors[500],
  },
});

export function registerScheduleDelete(app: App) {
  app.openapi(deleteScheduleRoute, async (c) => {
    await deleteSchedule(c.var.services, c.var.apiKey.id, c.req.valid("param").id);
    return c.body(null, 204);
  });
}
