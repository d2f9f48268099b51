import { z } from "@hono/zod-openapi";
import { USAGE_GROUPS } from "../db/spend";
import { Timestamp } from "./common";

const Day = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, { error: "must be a date as YYYY-MM-DD" })
  .refine(
    (day) =>
      !Number.isNaN(Date.parse(`${day}T00:00:00Z`)) &&
      new Date(`${day}T00:00:00Z`).toISOString().startsWith(day),
    {
      error: "must be a real date as YYYY-MM-DD",
    },
  );

export const UsageQuerySchema = z.object({
  from: Day.optional().openapi({
    description: "First day (UTC, inclusive). Default: the first day of this month.",
    example: "2026-12-01",
  }),
  to: Day.optional().openapi({
    description: "Last day (UTC, inclusive). Default: today. At most 366 days after `from`.",
    example: "2026-12-31",
  }),
  group_by: z
    .enum(USAGE_GROUPS)
    .optional()
    .openapi({ description: "How runs and spend are grouped. Default: day.", example: "day" }),
  key_id: z.string().optional().openapi({
    description:
      "Admin token only: one key's usage (and budget). Without it the admin sees every key's runs together.",
    example: "key_01JD0Q4M3ZT6B3X9Y8W7V6U5T4",
  }),
});

export const BudgetSchema = z
  .object({
    limit_usd: z.number().nullable().openapi({ description: "The monthly budget; null: none.", example: 50 }),
    spent_usd: z.number().openapi({
      description:
        "This month (UTC) so far: with a budget, what is reserved (runs Parallel accepted and runs waiting to be accepted); without one, what the accepted runs cost.",
      example: 12.35,
    }),
    remaining_usd: z.number().nullable().openapi({ description: "null without a budget.", example: 37.65 }),
    resets_at: Timestamp.openapi({ description: "When the month, and the budget, start over." }),
  })
  .openapi("Budget");

export const UsageSchema = z
  .object({
    api_key_id: z.string().nullable().openapi({
      description: "The key; null: every key (admin).",
      example: "key_01JD0Q4M3ZT6B3X9Y8W7V6U5T4",
    }),
    from: z.string().openapi({ example: "2026-12-01" }),
    to: z.string().openapi({ example: "2026-12-31" }),
    group_by: z.enum(USAGE_GROUPS),
    groups: z
      .array(
        z.object({
          key: z.string().nullable().openapi({
            description:
              "The day, processor, schedule id or batch id. null groups the runs in no schedule (or no batch).",
            example: "2026-12-02",
          }),
          runs: z.number().int().openapi({ description: "Runs Parallel accepted.", example: 120 }),
          cost_usd: z.number().openapi({ description: "What they cost.", example: 1.2 }),
        }),
      )
      .openapi({ description: "Groups in order of their key; groups with no accepted run are absent." }),
    totals: z
      .object({
        runs: z.number().int().openapi({ example: 120 }),
        cost_usd: z.number().openapi({ example: 1.2 }),
      })
      .openapi({ description: "Over every group." }),
    budget: BudgetSchema.nullable().openapi({
      description: "The key's budget this month; null for every key.",
    }),
  })
  .openapi("Usage");
