// Callback deliveries and their attempts as the API shows them, and the signing-secret rotation.
import { z } from "@hono/zod-openapi";
import { DELIVERY_EVENTS, DELIVERY_STATUSES } from "../db/deliveries";
import { NextCursor, Timestamp } from "./common";

export const DeliveryAttemptSchema = z
  .object({
    series: z.number().int().openapi({ description: "1, then one more for each manual retry." }),
    attempt: z.number().int().openapi({ description: "1-based within the series.", example: 1 }),
    attempted_at: Timestamp,
    status_code: z
      .number()
      .int()
      .nullable()
      .openapi({ description: "The receiver's HTTP status; null when no response came.", example: 503 }),
    latency_ms: z.number().int().openapi({ example: 182 }),
    error: z
      .string()
      .nullable()
      .openapi({ description: "Why it failed; null on success.", example: "HTTP 503" }),
  })
  .openapi("DeliveryAttempt");

export const DeliverySchema = z
  .object({
    id: z.string().openapi({
      example: "dlv_01JD0Q4M3ZT6B3X9Y8W7V6U5T4",
      description: "Sent as `webhook-id`, the same on every attempt: deduplicate on it.",
    }),
    run_id: z.string().openapi({
      example: "run_01JD0Q4M3ZT6B3X9Y8W7V6U5T4",
      description:
        "The run; for a batch.completed delivery, the batch's first run (its timeline shows the delivery).",
    }),
    batch_id: z.string().nullable().openapi({
      description: "The batch of a batch.completed delivery; null for a run's own delivery.",
      example: null,
    }),
    event: z.enum(DELIVERY_EVENTS),
    url: z.string().openapi({ example: "https://example.com/hooks/taskrelay" }),
    status: z.enum(DELIVERY_STATUSES).openapi({
      description:
        "pending (being sent or waiting for a retry), succeeded (a 2xx came back), dead (no more attempts: gone, refused, or out of retries).",
    }),
    series: z.number().int().openapi({ description: "1, then one more for each manual retry.", example: 1 }),
    attempt_count: z.number().int().openapi({ description: "Attempts made in the current series." }),
    next_attempt_at: Timestamp.nullable(),
    last_attempt_at: Timestamp.nullable(),
    last_status_code: z
      .number()
      .int()
      .nullable()
      .openapi({ description: "The receiver's last HTTP status; null before an answer.", example: 503 }),
    last_error: z.string().nullable().openapi({
      description: "Why the last attempt failed, or why the delivery is dead.",
      example: "HTTP 503",
    }),
    created_at: Timestamp,
    updated_at: Timestamp,
  })
  .openapi("Delivery");

export type DeliveryView = z.infer<typeof DeliverySchema>;

export const DeliveryWithAttemptsSchema = DeliverySchema.extend({
  attempts: z
    .array(DeliveryAttemptSchema)
    .openapi({ description: "The first 20 attempts, oldest first (all of them unless retried by hand)." }),
  attempts_next_cursor: NextCursor.openapi({
    description:
      "Pass it as `cursor` to GET /v1/deliveries/{id}/attempts for the attempts after these; null when these are all.",
  }),
}).openapi("DeliveryWithAttempts", { description: "A delivery with its first attempts." });

export const DeliveryAttemptListSchema = z
  .object({
    delivery_id: z.string().openapi({ example: "dlv_01JD0Q4M3ZT6B3X9Y8W7V6U5T4" }),
    data: z.array(DeliveryAttemptSchema).openapi({ description: "Oldest first." }),
    next_cursor: NextCursor.openapi({
      description: "Pass it as `cursor` for the next (newer) attempts; null on the last page.",
    }),
  })
  .openapi("DeliveryAttemptList");

export const RunDeliveriesSchema = z
  .object({
    run_id: z.string().openapi({ example: "run_01JD0Q4M3ZT6B3X9Y8W7V6U5T4" }),
    data: z.array(DeliveryWithAttemptsSchema),
  })
  .openapi("RunDeliveries");

export const DeliveryListSchema = z
  .object({ data: z.array(DeliverySchema), next_cursor: NextCursor })
  .openapi("DeliveryList");

export const RotatedSigningSecretSchema = z
  .object({
    id: z.string().openapi({ example: "key_01JD0Q4M3ZT6B3X9Y8W7V6U5T4" }),
    signing_secret: z.string().openapi({
      example: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
      description: "The new Standard Webhooks secret. Shown only in this response.",
    }),
    previous_signing_secret_expires_at: Timestamp.openapi({
      description: "Until then every delivery carries two signatures: the new secret's and the old one's.",
    }),
  })
  .openapi("RotatedSigningSecret");
