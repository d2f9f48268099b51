import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../app";
import { deadLetterCount } from "../services/dead-letters";
import { operatorProblems } from "../services/operator-alerts";

const HealthSchema = z
  .object({
    status: z.enum(["ok", "degraded"]).openapi({
      description: "`degraded`: the Worker works, but something in `problems` needs the operator.",
    }),
    time: z.string().openapi({ description: "The Worker's clock, ISO 8601 UTC." }),
    problems: z
      .array(
        z.object({
          name: z.string().openapi({ example: "parallel_credentials" }),
          parallel_status: z.number().int().openapi({ example: 401 }),
          reason: z.string().openapi({ description: "What to fix, and Parallel's own message." }),
          since: z.string().openapi({ description: "When it was first seen." }),
          last_seen_at: z.string().openapi({ description: "When it was last seen." }),
        }),
      )
      .openapi({ description: "What the operator must fix; empty when `ok`." }),
    dead_letters: z.number().int().openapi({
      description:
        "Background work whose queue messages kept failing (replay them with POST /v1/dead-letters/replay).",
    }),
  })
  .openapi("Health");

export const healthRoute = createRoute({
  method: "get",
  path: "/healthz",
  summary: "Liveness, database reachability, and problems the operator must fix",
  description:
    "200 when the Worker runs and D1 answers a query; no credentials needed. `degraded` (still 200: the Worker " +
    "works) while Parallel refuses taskrelay's own API key or account (401/402 on create): runs wait `submitting` " +
    "until the operator fixes it, and the next create Parallel accepts clears it. `dead_letters` counts " +
    "background work whose queue messages kept failing.",
  responses: {
    200: {
      description: "The Worker runs and D1 answers.",
      content: { "application/json": { schema: HealthSchema } },
    },
  },
});

export function registerHealth(app: App) {
  app.openapi(healthRoute, async (c) => {
    const [problems, deadLetters] = await Promise.all([
      operatorProblems(c.var.services),
      deadLetterCount(c.var.services),
    ]);
    const status = problems.length > 0 ? ("degraded" as const) : ("ok" as const);
    return c.json(
      { status, time: c.var.services.now().toISOString(), problems, dead_letters: deadLetters },
      200,
    );
  });
}
