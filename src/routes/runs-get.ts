import { createRoute } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireApiKey } from "../middleware/auth";
import { API_KEY_SECURITY, errors, IdParamSchema } from "../schemas/common";
import { RunSchema } from "../schemas/runs";
import { toRunView } from "../services/run-view";
import { getOwnedRun } from "../services/runs";

export const RunIdParam = IdParamSchema("run", "run_01JD0Q4M3ZT6B3X9Y8W7V6U5T4");

export const getRunRoute = createRoute({
  method: "get",
  path: "/v1/runs/{id}",
  summary: "Get a run",
  description:
    "The run's status and timestamps. `result_available` says whether GET /v1/runs/{id}/result has the output.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: { params: RunIdParam },
  responses: {
    200: { description: "The run.", content: { "application/json": { schema: RunSchema } } },
    401: errors[401],
    404: errors[404],
    500: errors[500],
  },
});

export function registerRunGet(app: App) {
  app.openapi(getRunRoute, async (c) => {
    const run = await getOwnedRun(c.var.services, c.var.apiKey.id, c.req.valid("param").id);
    return c.json(toRunView(run), 200);
  });
}
