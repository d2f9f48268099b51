import { createRoute } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireApiKey } from "../middleware/auth";
import { API_KEY_SECURITY, errors } from "../schemas/common";
import { RunDeliveriesSchema } from "../schemas/deliveries";
import { listOwnedRunDeliveries } from "../services/deliveries";
import { toAttemptView, toDeliveryView } from "../services/delivery-view";
import { RunIdParam } from "./runs-get";

export const listRunDeliveriesRoute = createRoute({
  method: "get",
  path: "/v1/runs/{id}/deliveries",
  summary: "A run's callback deliveries, with every attempt",
  description:
    "One delivery per event (`run.completed` or `run.failed`) for a run with a callback URL; none without one.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: { params: RunIdParam },
  responses: {
    200: {
      description: "The run's deliveries, oldest first, each with its first 20 attempts.",
      content: { "application/json": { schema: RunDeliveriesSchema } },
    },
    401: errors[401],
    404: errors[404],
    500: errors[500],
  },
});

export function registerRunDeliveries(app: App) {
  app.openapi(listRunDeliveriesRoute, async (c) => {
    const id = c.req.valid("param").id;
    const deliveries = await listOwnedRunDeliveries(c.var.services, c.var.apiKey.id, id);
    const data = deliveries.map(({ delivery, attempts, attemptsNextCursor }) => ({
      ...toDeliveryView(delivery),
      attempts: attempts.map(toAttemptView),
      attempts_next_cursor: attemptsNextCursor,
    }));
    return c.json({ run_id: id, data }, 200);
  });
}
