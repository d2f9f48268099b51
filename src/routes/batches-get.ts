import { createRoute } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireApiKey } from "../middleware/auth";
import { BatchSchema } from "../schemas/batches";
import { API_KEY_SECURITY, errors, IdParamSchema } from "../schemas/common";
import { batchView, getOwnedBatch } from "../services/batches";
import { getScopeSpend } from "../services/spend";

export const BatchIdParam = IdParamSchema("bat", "bat_01JD0Q4M3ZT6B3X9Y8W7V6U5T4");

export const getBatchRoute = createRoute({
  method: "get",
  path: "/v1/batches/{id}",
  summary: "Get a batch",
  description:
    "The batch with its runs counted by status, an ETA (an upper bound from the processor's latency) and " +
    "`cost_usd`, what its accepted runs cost. " +
    "Its runs are GET /v1/runs?batch_id={id}.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: { params: BatchIdParam },
  responses: {
    200: { description: "The batch.", content: { "application/json": { schema: BatchSchema } } },
    401: errors[401],
    404: errors[404],
    500: errors[500],
  },
});

export function registerBatchGet(app: App) {
  app.openapi(getBatchRoute, async (c) => {
    const ctx = c.var.services;
    const batch = await getOwnedBatch(ctx, c.var.apiKey.id, c.req.valid("param").id);
    const spend = await getScopeSpend(ctx, batch);
    return c.json({ ...batchView(ctx, batch), cost_usd: spend.cost_usd }, 200);
  });
}
