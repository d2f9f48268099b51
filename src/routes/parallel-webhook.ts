import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../app";
import { errors } from "../schemas/common";
import { receiveParallelWebhook } from "../services/parallel-webhook";
import { verifyParallelSignature } from "../webhooks/verify";

export const parallelWebhookRoute = createRoute({
  method: "post",
  path: "/webhooks/parallel",
  summary: "Parallel's completion webhook (called by Parallel)",
  description:
    "Verified with the account webhook secret (Standard Webhooks layout). Answers 200 at once — also for duplicates and " +
    "for runs taskrelay does not know, so Parallel stops retrying — and fetches the result after the response.",
  middleware: [verifyParallelSignature()] as const,
  responses: {
    200: {
      description: "Received.",
      content: {
        "application/json": {
          schema: z.object({
            received: z.literal(true),
            outcome: z.enum(["duplicate", "ignored", "unknown_run", "applied", "already_applied"]),
            run_id: z.string().nullable(),
          }),
        },
      },
    },
    400: errors[400],
    401: errors[401],
    500: errors[500],
  },
});

export function registerParallelWebhook(app: App) {
  app.openapi(parallelWebhookRoute, async (c) => {
    const receipt = await receiveParallelWebhook(c.var.services, c.var.parallelWebhook);
    return c.json({ received: true as const, ...receipt }, 200);
  });
}
