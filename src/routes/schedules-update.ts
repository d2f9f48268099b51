import { createRoute } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireApiKey } from "../middleware/auth";
import { validationHook } from "../middleware/validation";
import { API_KEY_SECURITY, errors } from "../schemas/common";
import { ScheduleDetailSchema, ScheduleUpdateSchema } from "../schemas/schedules";
import { toScheduleDetailView } from "../services/schedule-view";
import { checkScheduleBody, updateSchedule } from "../services/schedules";
import { ScheduleIdParam } from "./schedules-get";

export const updateScheduleRoute = createRoute({
  method: "patch",
  path: "/v1/schedules/{id}",
  summary: "Change, pause or resume a schedule",
  description:
    "Any field; the result passes the same checks as a new schedule. `enabled: false` pauses it; `enabled: true` " +
    "resumes it with the next fire time computed from now (paused time is not made up). A new cron or time zone " +
    "also recomputes the next fire time from now. `template` replaces the whole template.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: {
    params: ScheduleIdParam,
    body: { required: true, content: { "application/json": { schema: ScheduleUpdateSchema } } },
  },
  responses: {
    200: {
      description: "The changed schedule, with its next fire times.",
      content: { "application/json": { schema: ScheduleDetailSchema } },
    },
    400: errors[400],
    401: errors[401],
    404: errors[404],
    413: errors[413],
    415: errors[415],
    422: errors[422],
    500: errors[500],
  },
});

export function registerScheduleUpdate(app: App) {
  app.openapi(
    updateScheduleRoute,
    async (c) => {
      const schedule = await updateSchedule(
        c.var.services,
        c.var.apiKey.id,
        c.req.valid("param").id,
        c.req.valid("json"),
      );
      return c.json(toScheduleDetailView(schedule), 200);
    },
    validationHook((body, c) => checkScheduleBody(body, c.var.services.config, c.var.services.now())),
  );
}
