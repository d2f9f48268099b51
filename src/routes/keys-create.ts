import { createRoute } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireAdminToken } from "../middleware/auth";
import { ADMIN_SECURITY, errors } from "../schemas/common";
import { CreatedKeySchema, CreateKeyRequestSchema } from "../schemas/keys";
import { createApiKey } from "../services/keys";

export const createKeyRoute = createRoute({
  method: "post",
  path: "/v1/keys",
  summary: "Create an API key (admin)",
  description: "Returns the key and its callback signing secret once; only a hash of the key is stored.",
  security: ADMIN_SECURITY,
  middleware: [requireAdminToken()] as const,
  request: { body: { required: true, content: { "application/json": { schema: CreateKeyRequestSchema } } } },
  responses: {
    201: { description: "The new key.", content: { "application/json": { schema: CreatedKeySchema } } },
    400: errors[400],
    401: errors[401],
    413: errors[413],
    415: errors[415],
    422: errors[422],
    500: errors[500],
  },
});

export function registerKeyCreate(app: App) {
  app.openapi(createKeyRoute, async (c) => {
    const created = await createApiKey(c.var.services, c.req.valid("json"));
    return c.json(created, 201);
  });
}
