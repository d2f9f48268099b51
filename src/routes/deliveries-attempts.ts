import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireApiKey } from "../middleware/auth";
import {
  API_KEY_SECURITY,
  CursorQuerySchema,
  errors,
  IdParamSchema,
  LimitQuerySchema,
} from "../schemas/common";
import { DeliveryAttemptListSchema } from "../schemas/deliveries";
import { listOwnedDeliveryAttempts } from "../services/deliveries";
import { toAttemptView } from "../services/delivery-view";

export const listDeliveryAttemptsRoute = createRoute({
  method: "get",
  path: "/v1/deliveries/{id}/attempts",
  summary: "Every attempt at a delivery, a page at a time",
  description:
    "Oldest first, every series included. GET /v1/runs/{id}/deliveries shows the first 20 of each delivery " +
    "and the cursor that continues here.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: {
    params: IdParamSchema("dlv", "dlv_01JD0Q4M3ZT6B3X9Y8W7V6U5T4"),
    query: z.object({ limit: LimitQuerySchema, cursor: CursorQuerySchema }),
  },
  responses: {
    200: {
      description: "A page of the delivery's attempts.",
      content: { "application/json": { schema: DeliveryAttemptListSchema } },
    },
    401: errors[401],
    404: errors[404],
    422: errors[422],
    500: errors[500],
  },
});

export function registerDeliveryAttempts(app: App) {
  app.openapi(listDeliveryAttemptsRoute, async (c) => {
    const id = c.req.valid("param").id;
    const page = await listOwnedDeliveryAttempts(c.var.services, c.var.apiKey.id, id, c.req.valid("query"));
    return c.json(
      { delivery_id: id, data: page.attempts.map(toAttemptView), next_cursor: page.nextCursor },
      200,
    );
  });
}
