import { createRoute } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireAdminToken } from "../middleware/auth";
import { ADMIN_SECURITY, errors, IdParamSchema } from "../schemas/common";
import { KeySchema } from "../schemas/keys";
import { revokeApiKey } from "../services/keys";

export const revokeKeyRoute = createRoute({
  method: "delete",
  path: "/v1/keys/{id}",
  summary: "Revoke an API key (admin)",
  description:
    "The key stops authenticating at once. Nothing more is spent for it: its runs still `submitting` end " +
    "`failed` (`key_revoked`) instead of being sent again, its schedules pause. What it is owed is still " +
    "delivered: runs Parallel already accepted finish, and their callbacks are sent. Its runs are kept. " +
    "Revoking twice is harmless.",
  security: ADMIN_SECURITY,
  middleware: [requireAdminToken()] as const,
  request: { params: IdParamSchema("key", "key_01JD0Q4M3ZT6B3X9Y8W7V6U5T4") },
  responses: {
    200: { description: "The revoked key.", content: { "application/json": { schema: KeySchema } } },
    401: errors[401],
    404: errors[404],
    500: errors[500],
  },
});

export function registerKeyRevoke(app: App) {
  app.openapi(revokeKeyRoute, async (c) =>
    c.json(await revokeApiKey(c.var.services, c.req.valid("param").id), 200),
  );
}
