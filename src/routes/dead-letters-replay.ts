import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../app";
import { queueOfKind } from "../cron/dispatcher";
import { queueBinding } from "../cron/work";
import { requireAdminToken } from "../middleware/auth";
import { ADMIN_SECURITY, errors } from "../schemas/common";
import { replayDeadLetters } from "../services/dead-letters";

export const deadLettersReplayRoute = createRoute({
  method: "post",
  path: "/v1/dead-letters/replay",
  summary: "Replay dead-lettered background work (admin)",
  description:
    "Sends up to 100 queue messages whose work kept failing (GET /healthz counts them) to their queue again, and forgets them. Each is worked only if its run, delivery or schedule is still due and free.",
  security: ADMIN_SECURITY,
  middleware: [requireAdminToken()] as const,
  responses: {
    200: {
      description: "How many were sent again, and how many were not messages of taskrelay's (dropped).",
      content: {
        "application/json": {
          schema: z.object({ replayed: z.number().int(), dropped: z.number().int() }),
        },
      },
    },
    401: errors[401],
    500: errors[500],
  },
});

export function registerDeadLettersReplay(app: App) {
  app.openapi(deadLettersReplayRoute, async (c) => {
    // Both bindings first: a missing one is a configuration_error before any dead letter is taken.
    const queues = { work: queueBinding(c.env, "work"), deliveries: queueBinding(c.env, "deliveries") };
    return c.json(await replayDeadLetters(c.var.services, (kind) => queues[queueOfKind(kind)]), 200);
  });
}
