import { createRoute } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireApiKey } from "../middleware/auth";
import { API_KEY_SECURITY, errors, IdParamSchema } from "../schemas/common";
import { DeliverySchema } from "../schemas/deliveries";
import { retryDelivery } from "../services/deliveries";
import { toDeliveryView } from "../services/delivery-view";

export const retryDeliveryRoute = createRoute({
  method: "post",
  path: "/v1/deliveries/{id}/retry",
  summary: "Send a delivery again",
  description:
    "For a dead or succeeded delivery: a new series of attempts (the full retry schedule) with the same `webhook-id`, the first sent at once. " +
    "For a pending delivery waiting for its next attempt: that attempt is sent now, in the same series. " +
    "A pending delivery whose attempt is being sent at this moment: 409.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: { params: IdParamSchema("dlv", "dlv_01JD0Q4M3ZT6B3X9Y8W7V6U5T4") },
  responses: {
    202: {
      description: "The delivery, pending; its next attempt is under way.",
      content: { "application/json": { schema: DeliverySchema } },
    },
    401: errors[401],
    404: errors[404],
    409: errors[409],
    500: errors[500],
  },
});

export function registerDeliveryRetry(app: App) {
  app.openapi(retryDeliveryRoute, async (c) => {
    const delivery = await retryDelivery(c.var.services, c.var.apiKey.id, c.req.valid("param").id);
    return c.json(toDeliveryView(delivery), 202);
  });
}
