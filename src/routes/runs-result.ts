import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireApiKey } from "../middleware/auth";
import { API_KEY_SECURITY, errors, integerQuery } from "../schemas/common";
import { RunResultSchema } from "../schemas/runs";
import { toRunView } from "../services/run-view";
import { getRunResult } from "../services/runs";
import { RunIdParam } from "./runs-get";

export const getRunResultRoute = createRoute({
  method: "get",
  path: "/v1/runs/{id}/result",
  summary: "Get a run's result",
  description:
    "200 with the output once the run completed and its result is stored; 409 `result_not_ready` before that, " +
    "409 `run_failed` for a run that ended without a result. `wait` holds the request up to N seconds for the result.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: {
    params: RunIdParam,
    query: z.object({
      wait: integerQuery({
        min: 0,
        max: 60,
        default: 0,
        description: "Seconds to wait for the result, 0 to 60.",
        example: 30,
      }),
    }),
  },
  responses: {
    200: {
      description: "The run and its output.",
      content: { "application/json": { schema: RunResultSchema } },
    },
    401: errors[401],
    404: errors[404],
    409: errors[409],
    422: errors[422],
    500: errors[500],
  },
});

export function registerRunResult(app: App) {
  app.openapi(getRunResultRoute, async (c) => {
    const { run, output } = await getRunResult(
      c.var.services,
      c.var.apiKey.id,
      c.req.valid("param").id,
      c.req.valid("query").wait,
    );
    return c.json({ run: toRunView(run), output: output as z.infer<typeof RunResultSchema>["output"] }, 200);
  });
}
