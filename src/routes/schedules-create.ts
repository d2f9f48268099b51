import { createRoute } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireApiKey } from "../middleware/auth";
import { validationHook } from "../middleware/validation";
import { API_KEY_SECURITY, errors } from "../schemas/common";
import { ScheduleCreateSchema, ScheduleDetailSchema } from "../schemas/schedules";
import { toScheduleDetailView } from "../services/schedule-view";
import { checkScheduleBody, createSchedule } from "../services/schedules";

export const createScheduleRoute = createRoute({
  method: "post",
  path: "/v1/schedules",
  summary: "Create a recurring research schedule",
  description:
    "A run template that runs on a five-field cron in an IANA time zone. The template passes the same checks as " +
    "POST /v1/runs; its input may use {{scheduled_at}}, {{scheduled_date}}, {{last_success_at}} and " +
    "{{last_success_date}}. Answers with the schedule and its next five fire times.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: { body: { required: true, content: { "application/json": { schema: ScheduleCreateSchema } } } },
  responses: {
    201: {
      description: "The schedule, with its next fire times.",
      content: { "application/json": { schema: ScheduleDetailSchema } },
    },
    400: errors[400],
    401: errors[401],
    413: errors[413],
    415: errors[415],
    422: errors[422],
    500: errors[500],
  },
});

export function registerScheduleCreate(app: App) {
  app.openapi(
    createScheduleRoute,
    async (c) => {
      const schedule = await createSchedule(c.var.services, c.var.apiKey.id, c.req.valid("json"));
      return c.json(toScheduleDetailView(schedule), 201);
    },
    validationHook((body, c) => checkScheduleBody(body, c.var.services.config, c.var.services.now())),
  );
}
