import { createRoute } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireAdminOrOwnKey } from "../middleware/admin-or-own-key";
import { ADMIN_SECURITY, API_KEY_SECURITY, errors, IdParamSchema } from "../schemas/common";
import { RotatedSigningSecretSchema } from "../schemas/deliveries";
import { rotateKeySigningSecret } from "../services/signing-secrets";

export const rotateSigningSecretRoute = createRoute({
  method: "post",
  path: "/v1/keys/{id}/signing-secret/rotate",
  summary: "Rotate a key's callback signing secret (admin, or the key itself)",
  description:
    "Issues a new `whsec_` secret and returns it once. For 24 hours every delivery carries two signatures, the new secret's and the old one's, so receivers can switch without losing a delivery. Rotating again within the 24 hours drops the oldest secret.",
  security: [...ADMIN_SECURITY, ...API_KEY_SECURITY],
  middleware: [requireAdminOrOwnKey()] as const,
  request: { params: IdParamSchema("key", "key_01JD0Q4M3ZT6B3X9Y8W7V6U5T4") },
  responses: {
    200: {
      description: "The new secret.",
      content: { "application/json": { schema: RotatedSigningSecretSchema } },
    },
    401: errors[401],
    404: errors[404],
    500: errors[500],
  },
});

export function registerSigningSecretRotate(app: App) {
  app.openapi(rotateSigningSecretRoute, async (c) =>
    c.json(await rotateKeySigningSecret(c.var.services, c.req.valid("param").id), 200),
  );
}
