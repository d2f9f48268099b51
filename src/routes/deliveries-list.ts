import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../app";
import { DELIVERY_STATUSES } from "../db/deliveries";
import { requireApiKey } from "../middleware/auth";
import { API_KEY_SECURITY, CursorQuerySchema, errors, LimitQuerySchema } from "../schemas/common";
import { DeliveryListSchema } from "../schemas/deliveries";
import { listOwnedDeliveries } from "../services/deliveries";
import { toDeliveryView } from "../services/delivery-view";

export const listDeliveriesRoute = createRoute({
  method: "get",
  path: "/v1/deliveries",
  summary: "List your callback deliveries",
  description:
    "Newest first; `status=dead` lists the dead letters to retry. Pass `next_cursor` back as `cursor` for the next page.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: {
    query: z.object({
      status: z.enum(DELIVERY_STATUSES).optional().openapi({
        description: "Only deliveries in this state; `dead` lists the dead letters.",
        example: "dead",
      }),
      limit: LimitQuerySchema,
      cursor: CursorQuerySchema,
    }),
  },
  responses: {
    200: {
      description: "A page of deliveries.",
      content: { "application/json": { schema: DeliveryListSchema } },
    },
    401: errors[401],
    422: errors[422],
    500: errors[500],
  },
});

export function registerDeliveryList(app: App) {
  app.openapi(listDeliveriesRoute, async (c) => {
    const query = c.req.valid("query");
    const page = await listOwnedDeliveries(c.var.services, { apiKeyId: c.var.apiKey.id, ...query });
    return c.json({ data: page.deliveries.map(toDeliveryView), next_cursor: page.nextCursor }, 200);
  });
}
