import { createRoute } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireAdminToken } from "../middleware/auth";
import { ADMIN_SECURITY, errors, IdParamSchema } from "../schemas/common";
import { KeySchema, UpdateKeyRequestSchema } from "../schemas/keys";
import { updateApiKey } from "../services/keys";

export const updateKeyRoute = createRoute({
  method: "patch",
  path: "/v1/keys/{id}",
  summary: "Change an API key's budget (admin)",
  description:
    "Sets `monthly_budget_usd` (null removes it). A budget set mid-month counts what the key's runs accepted " +
    "this month already cost. The key reads its budget and spend on GET /v1/usage.",
  security: ADMIN_SECURITY,
  middleware: [requireAdminToken()] as const,
  request: {
    params: IdParamSchema("key", "key_01JD0Q4M3ZT6B3X9Y8W7V6U5T4"),
    body: { required: true, content: { "application/json": { schema: UpdateKeyRequestSchema } } },
  },
  responses: {
    200: { description: "The key.", content: { "application/json": { schema: KeySchema } } },
    400: errors[400],
    401: errors[401],
    404: errors[404],
    413: errors[413],
    415: errors[415],
    422: errors[422],
    500: errors[500],
  },
});

export function registerKeyUpdate(app: App) {
  app.openapi(updateKeyRoute, async (c) =>
    c.json(await updateApiKey(c.var.services, c.req.valid("param").id, c.req.valid("json")), 200),
  );
}
