import { z } from "@hono/zod-openapi";
import { Timestamp } from "./common";

export const KeySchema = z
  .object({
    id: z.string().openapi({ example: "key_01JD0Q4M3ZT6B3X9Y8W7V6U5T4" }),
    name: z.string().openapi({ example: "billing-service" }),
    key_prefix: z.string().openapi({ example: "trk_Qm9v4Tz1", description: "The key's first characters." }),
    created_at: Timestamp,
    revoked_at: Timestamp.nullable(),
    monthly_budget_usd: z.number().nullable().openapi({
      example: 50,
      description:
        "What the key may spend per calendar month (UTC), in USD; null: no budget. A run that would pass it is refused with 402 `budget_exceeded`.",
    }),
  })
  .openapi("ApiKey");

export const CreatedKeySchema = KeySchema.extend({
  key: z.string().openapi({ description: "The API key. Shown only in this response; store it now." }),
  signing_secret: z.string().openapi({
    example: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    description: "Standard Webhooks secret that signs this key's callbacks. Shown only here.",
  }),
}).openapi("CreatedApiKey", { description: "A new key, with the two secrets that are shown only once." });

/** USD with at most micro-dollar precision (amounts are kept as integer micro-dollars). */
export const BudgetUsd = z.number().nonnegative().max(1_000_000_000).nullable().openapi({
  example: 50,
  description: "Monthly budget in USD (calendar month, UTC); null: none.",
});

export const CreateKeyRequestSchema = z
  .object({
    name: z.string().min(1).max(100).openapi({ example: "billing-service" }),
    monthly_budget_usd: BudgetUsd.optional(),
  })
  .strict()
  .openapi("CreateKeyRequest");

export const UpdateKeyRequestSchema = z
  .object({ monthly_budget_usd: BudgetUsd })
  .strict()
  .openapi("UpdateKeyRequest");
