import { createRoute } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireApiKey } from "../middleware/auth";
import { API_KEY_SECURITY, errors } from "../schemas/common";
import { RunSchema } from "../schemas/runs";
import { toRunView } from "../services/run-view";
import { triggerSchedule } from "../services/schedules";
import { ScheduleIdParam } from "./schedules-get";

export const triggerScheduleRoute = createRoute({
  method: "post",
  path: "/v1/schedules/{id}/trigger",
  summary: "Run a schedule once now",
  description:
    "Starts one run from the template now (placeholders filled in for now, chained if the schedule chains), even " +
    "while paused or while another run is in flight. The next scheduled fire time does not change.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: { params: ScheduleIdParam },
  responses: {
    202: {
      description: "Stored and submitted (or queued for another submission attempt), as POST /v1/runs.",
      content: { "application/json": { schema: RunSchema } },
    },
    401: errors[401],
    404: errors[404],
    409: errors[409],
    422: errors[422],
    500: errors[500],
  },
});

export function registerScheduleTrigger(app: App) {
  app.openapi(triggerScheduleRoute, async (c) => {
    const run = await triggerSchedule(c.var.services, c.var.apiKey.id, c.req.valid("param").id);
    return c.json(toRunView(run), 202);
  });
}
