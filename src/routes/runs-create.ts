import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireApiKey } from "../middleware/auth";
import { validationHook } from "../middleware/validation";
import { API_KEY_SECURITY, errors } from "../schemas/common";
import { DryRunSchema, RunRequestSchema, RunSchema } from "../schemas/runs";
import { checkRunRequest } from "../services/run-request";
import { toRunView } from "../services/run-view";
import { createRun, dryRunCreate } from "../services/runs";

export const createRunRoute = createRoute({
  method: "post",
  path: "/v1/runs",
  summary: "Start a research run",
  description:
    "Checks the request against Parallel's limits, stores the run, and creates it at Parallel with a completion webhook. " +
    "If Parallel is briefly unavailable the run stays `submitting` and is retried; you still get 202. " +
    "With `Idempotency-Key`, repeating the same request returns the same run instead of a second one. " +
    "The run's cost is reserved against the key's monthly budget first: a run that would pass it is refused with 402 " +
    "`budget_exceeded` before anything is stored or paid. `dry_run: true` answers 200 with the checks and the cost, " +
    "and stores, reserves and submits nothing.",
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
    200: {
      description: "`dry_run: true`: the checks and the cost; nothing was stored or submitted.",
      content: { "application/json": { schema: DryRunSchema } },
    },
    202: {
      description: "Stored and submitted (or queued for another submission attempt).",
      headers: z.object({ "idempotent-replayed": z.string().optional() }),
      content: { "application/json": { schema: RunSchema } },
    },
    400: errors[400],
    401: errors[401],
    402: errors[402],
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
      const { dry_run: dryRun, ...request } = c.req.valid("json");
      const input = {
        apiKeyId: c.var.apiKey.id,
        request,
        idempotencyKey: c.req.valid("header")["idempotency-key"],
        keyHasBudget: c.var.apiKey.monthly_budget_micro_usd !== null,
      };
      if (dryRun) return c.json(await dryRunCreate(c.var.services, input), 200);
      const { run, replayed } = await createRun(c.var.services, input);
      if (replayed) c.header("idempotent-replayed", "true");
      return c.json(toRunView(run), 202);
    },
    validationHook((body, c) => checkRunRequest(body, c.var.services.config)),
  );
}
