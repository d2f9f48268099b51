import { createRoute } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireApiKey } from "../middleware/auth";
import { API_KEY_SECURITY, errors } from "../schemas/common";
import { RunInputSchema } from "../schemas/runs";
import { toRunInputView } from "../services/run-view";
import { getOwnedRun } from "../services/runs";
import { RunIdParam } from "./runs-get";

export const getRunInputRoute = createRoute({
  method: "get",
  path: "/v1/runs/{id}/input",
  summary: "Get what a run was asked",
  description: "The request as stored. MCP server header values are redacted.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: { params: RunIdParam },
  responses: {
    200: { description: "The run's input.", content: { "application/json": { schema: RunInputSchema } } },
    401: errors[401],
    404: errors[404],
    500: errors[500],
  },
});

export function registerRunInput(app: App) {
  app.openapi(getRunInputRoute, async (c) => {
    const run = await getOwnedRun(c.var.services, c.var.apiKey.id, c.req.valid("param").id);
    return c.json(toRunInputView(run), 200);
  });
}
