import { z } from "@hono/zod-openapi";
import { Timestamp } from "./common";

export const KeySchema = z
  .object({
    id: z.string().openapi({ example: "key_01JD0Q4M3ZT6B3X9Y8W7V6U5T4" }),
    name: z.string().openapi({ example: "billing-service" }),
    key_prefix: z.string().openapi({ example: "trk_Qm9v4Tz1", description: "The key's first characters." }),
    created_at: Timestamp,
    revoked_at: Timestamp.nullable(),
  })
  .openapi("ApiKey");

export const CreatedKeySchema = KeySchema.extend({
  key: z.string().openapi({ description: "The API key. Shown only in this response; store it now." }),
  signing_secret: z.string().openapi({
    example: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    description: "Standard Webhooks secret that signs this key's callbacks. Shown only here.",
  }),
}).openapi("CreatedApiKey", { description: "A new key, with the two secrets that are shown only once." });

export const CreateKeyRequestSchema = z
  .object({ name: z.string().min(1).max(100).openapi({ example: "billing-service" }) })
  .strict()
  .openapi("CreateKeyRequest");
