import { createRoute } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireApiKey } from "../middleware/auth";
import { BatchSchema } from "../schemas/batches";
import { API_KEY_SECURITY, errors } from "../schemas/common";
import { closeBatch } from "../services/batches";
import { BatchIdParam } from "./batches-get";

export const closeBatchRoute = createRoute({
  method: "post",
  path: "/v1/batches/{id}/close",
  summary: "Close an open batch",
  description:
    "The list is complete: no more inputs. The batch is `submitting` while inputs are still being sent, then " +
    "`running`. Closing a closed batch answers it as it is; a cancelled one is 409.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: { params: BatchIdParam },
  responses: {
    200: { description: "The batch, closed.", content: { "application/json": { schema: BatchSchema } } },
    401: errors[401],
    404: errors[404],
    409: errors[409],
    500: errors[500],
  },
});

export function registerBatchClose(app: App) {
  app.openapi(closeBatchRoute, async (c) =>
    c.json(await closeBatch(c.var.services, c.var.apiKey.id, c.req.valid("param").id), 200),
  );
}
