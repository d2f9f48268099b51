import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireApiKey } from "../middleware/auth";
import { validationHook } from "../middleware/validation";
import { BatchDryRunSchema, BatchInputSchema, BatchRequestSchema, BatchSchema } from "../schemas/batches";
import { API_KEY_SECURITY, errors } from "../schemas/common";
import { checkBatchRequestBody, createBatch, dryRunBatch } from "../services/batches";

export const createBatchRoute = createRoute({
  method: "post",
  path: "/v1/batches",
  summary: "Start a batch: one template, many inputs",
  description:
    "Up to 10,000 inputs in one request, each an ordinary run (GET /v1/runs?batch_id=). Every input is checked as " +
    "POST /v1/runs checks a run, before anything is stored: a 422 lists every refused input by its `index` (and " +
    "`path`, `inputs.<index>.…`), and nothing is stored unless all pass — or, with `skip_invalid`, the rest are " +
    "submitted and the refused are listed in `refused`. The batch is sent to Parallel as one Task Group, in calls " +
    "of up to 1,000 inputs, in the background; its counts show the progress. With `Idempotency-Key`, repeating the " +
    "same request returns the same batch. The body may be up to 10 MB. The inputs' cost (price × inputs) is " +
    "reserved against the key's monthly budget before anything is stored: over it, the whole request is 402 " +
    "`budget_exceeded`. `dry_run: true` answers 200 with the checks, the inputs and the cost; nothing is stored.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: {
    headers: z.object({
      "idempotency-key": z.string().min(1).max(255).optional().openapi({
        description: "Any unique string; same key and body return the first batch.",
        example: "accounts-2026-12",
      }),
    }),
    body: { required: true, content: { "application/json": { schema: BatchRequestSchema } } },
  },
  responses: {
    200: {
      description: "`dry_run: true`: the checks, the inputs and the cost; nothing was stored or submitted.",
      content: { "application/json": { schema: BatchDryRunSchema } },
    },
    202: {
      description: "Stored; its inputs are being submitted.",
      headers: z.object({ "idempotent-replayed": z.string().optional() }),
      content: { "application/json": { schema: BatchSchema } },
    },
    400: errors[400],
    401: errors[401],
    404: errors[404],
    402: errors[402],
    409: errors[409],
    413: errors[413],
    415: errors[415],
    422: errors[422],
    500: errors[500],
  },
});

export function registerBatchCreate(app: App) {
  app.openAPIRegistry.register("BatchInput", BatchInputSchema);
  app.openapi(
    createBatchRoute,
    async (c) => {
      const input = {
        apiKeyId: c.var.apiKey.id,
        request: c.req.valid("json"),
        idempotencyKey: c.req.valid("header")["idempotency-key"],
        queue: c.env.WORK_QUEUE,
      };
      if (input.request.dry_run) return c.json(await dryRunBatch(c.var.services, input), 200);
      const { batch, replayed } = await createBatch(c.var.services, input);
      if (replayed) c.header("idempotent-replayed", "true");
      return c.json(batch, 202);
    },
    validationHook((body, c) => checkBatchRequestBody(body, c.var.services)),
  );
}
