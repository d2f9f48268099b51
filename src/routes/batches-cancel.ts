import { createRoute } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireApiKey } from "../middleware/auth";
import { BatchSchema } from "../schemas/batches";
import { API_KEY_SECURITY, errors } from "../schemas/common";
import { cancelBatch } from "../services/batches";
import { BatchIdParam } from "./batches-get";

export const cancelBatchRoute = createRoute({
  method: "post",
  path: "/v1/batches/{id}/cancel",
  summary: "Cancel a batch",
  description:
    "Nothing more is sent to Parallel: inputs not yet sent end `cancelled`. Runs already at Parallel finish there " +
    "and are kept, with their results and callbacks. Cancelling a cancelled or completed batch answers it as it is.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: { params: BatchIdParam },
  responses: {
    200: { description: "The batch, cancelled.", content: { "application/json": { schema: BatchSchema } } },
    401: errors[401],
    404: errors[404],
    500: errors[500],
  },
});

export function registerBatchCancel(app: App) {
  app.openapi(cancelBatchRoute, async (c) =>
    c.json(await cancelBatch(c.var.services, c.var.apiKey.id, c.req.valid("param").id), 200),
  );
}
