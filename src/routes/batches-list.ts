import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../app";
import { BATCH_STATUSES } from "../db/batches";
import { requireApiKey } from "../middleware/auth";
import { BatchListSchema } from "../schemas/batches";
import { API_KEY_SECURITY, CursorQuerySchema, errors, LimitQuerySchema } from "../schemas/common";
import { listOwnedBatches } from "../services/batches";

export const listBatchesRoute = createRoute({
  method: "get",
  path: "/v1/batches",
  summary: "List your batches",
  description: "Newest first, each with its counts. Pass `next_cursor` back as `cursor` for the next page.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: {
    query: z.object({
      status: z.enum(BATCH_STATUSES).optional().openapi({ description: "Only batches in this state." }),
      limit: LimitQuerySchema,
      cursor: CursorQuerySchema,
    }),
  },
  responses: {
    200: { description: "A page of batches.", content: { "application/json": { schema: BatchListSchema } } },
    401: errors[401],
    422: errors[422],
    500: errors[500],
  },
});

export function registerBatchList(app: App) {
  app.openapi(listBatchesRoute, async (c) => {
    const page = await listOwnedBatches(c.var.services, {
      apiKeyId: c.var.apiKey.id,
      ...c.req.valid("query"),
    });
    return c.json({ data: page.batches, next_cursor: page.nextCursor }, 200);
  });
}
