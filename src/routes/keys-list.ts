import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireAdminToken } from "../middleware/auth";
import { ADMIN_SECURITY, errors } from "../schemas/common";
import { KeySchema } from "../schemas/keys";
import { listApiKeys } from "../services/keys";

export const listKeysRoute = createRoute({
  method: "get",
  path: "/v1/keys",
  summary: "List API keys (admin)",
  description: "Keys without their secrets, newest first, revoked ones included.",
  security: ADMIN_SECURITY,
  middleware: [requireAdminToken()] as const,
  responses: {
    200: {
      description: "The keys.",
      content: { "application/json": { schema: z.object({ data: z.array(KeySchema) }) } },
    },
    401: errors[401],
    500: errors[500],
  },
});

export function registerKeyList(app: App) {
  app.openapi(listKeysRoute, async (c) => c.json({ data: await listApiKeys(c.var.services) }, 200));
}
