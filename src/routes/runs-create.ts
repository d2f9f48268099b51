import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireApiKey } from "../middleware/auth";
import { validationHook } from "../middleware/validation";
import { API_KEY_SECURITY, errors } from "../schemas/common";
import { RunRequestSchema, RunSchema } from "../schemas/runs";
import { checkRunRequest } from "../services/run-request";
import { toRunView } from "../services/run-view";
import { createRun } from "../services/runs";

export const createRunRoute = createRoute({
  method: "post",
  path: "/v1/runs",
  summary: "Start a research run",
  description:
    "Checks the request against Parallel's limits, stores the run, and creates it at Parallel with a completion webhook. " +
    "If Parallel is briefly unavailable the run stays `submitting` and is retried; you still get 202. " +
    "With `Idempotency-Key`, repeating the same request returns the same run instead of a second one.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: {
    headers: z.object({
      "idempotency-key": z.string().min(1).max(255).optional().openapi({
        description: "Any unique string; same key and body return the first run.",
        example: "order-4711",
      }),
    }),
    body: { required: true, content: { "application/json": { schema: RunRequestSchema } } },
  },
  responses: {
    202: {
      description: "Stored and submitted (or queued for another submission attempt).",
      headers: z.object({ "idempotent-replayed": z.string().optional() }),
      content: { "application/json": { schema: RunSchema } },
    },
    400: errors[400],
    401: errors[401],
    404: errors[404],
    409: errors[409],
    413: errors[413],
    415: errors[415],
    422: errors[422],
    500: errors[500],
  },
});

export function registerRunCreate(app: App) {
  app.openapi(
    createRunRoute,
    async (c) => {
      const { run, replayed } = await createRun(c.var.services, {
        apiKeyId: c.var.apiKey.id,
        request: c.req.valid("json"),
        idempotencyKey: c.req.valid("header")["idempotency-key"],
      });
      if (replayed) c.header("idempotent-replayed", "true");
      return c.json(toRunView(run), 202);
    },
    validationHook((body, c) => checkRunRequest(body, c.var.services.config)),
  );
}
