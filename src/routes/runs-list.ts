import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../app";
import { RUN_STATUSES } from "../db/runs";
import { requireApiKey } from "../middleware/auth";
import { API_KEY_SECURITY, CursorQuerySchema, errors, LimitQuerySchema } from "../schemas/common";
import { RunListSchema } from "../schemas/runs";
import { toRunView } from "../services/run-view";
import { listOwnedRuns } from "../services/runs";

export const listRunsRoute = createRoute({
  method: "get",
  path: "/v1/runs",
  summary: "List your runs",
  description:
    "Newest first. Pass `next_cursor` back as `cursor` for the next page. `batch_id` lists one batch's runs.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: {
    query: z.object({
      status: z
        .enum(RUN_STATUSES)
        .optional()
        .openapi({ description: "Only runs in this state.", example: "completed" }),
      batch_id: z
        .string()
        .min(1)
        .optional()
        .openapi({ description: "Only the runs of this batch.", example: "bat_01JD0Q4M3ZT6B3X9Y8W7V6U5T4" }),
      limit: LimitQuerySchema,
      cursor: CursorQuerySchema,
    }),
  },
  responses: {
    200: { description: "A page of runs.", content: { "application/json": { schema: RunListSchema } } },
    401: errors[401],
    422: errors[422],
    500: errors[500],
  },
});

export function registerRunList(app: App) {
  app.openapi(listRunsRoute, async (c) => {
    const { batch_id: batchId, ...query } = c.req.valid("query");
    const page = await listOwnedRuns(c.var.services, { apiKeyId: c.var.apiKey.id, batchId, ...query });
    return c.json({ data: page.runs.map(toRunView), next_cursor: page.nextCursor }, 200);
  });
}
