import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../app";

export const healthRoute = createRoute({
  method: "get",
  path: "/healthz",
  summary: "Liveness and database reachability",
  description: "200 when the Worker runs and D1 answers a query; no credentials needed.",
  responses: {
    200: {
      description: "The Worker runs and D1 answers.",
      content: { "application/json": { schema: z.object({ status: z.literal("ok"), time: z.string() }) } },
    },
  },
});

export function registerHealth(app: App) {
  app.openapi(healthRoute, async (c) => {
    await c.var.services.db.prepare("SELECT 1").first();
    return c.json({ status: "ok" as const, time: c.var.services.now().toISOString() }, 200);
  });
}
