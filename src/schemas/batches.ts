// The batch requests and the batch as the API shows it (issue 15). A batch's template is a run
// request without its input and callback; each input brings its own input and metadata.
import { z } from "@hono/zod-openapi";
import { BATCH_STATUSES } from "../db/batches";
import { NextCursor, Timestamp } from "./common";
import { MetadataSchema, RunRequestSchema, RunTemplateFields } from "./runs";
import { BudgetSchema } from "./usage";

/** Inputs one request may carry, and a batch in all. */
export const MAX_BATCH_REQUEST_INPUTS = 10_000;
export const MAX_BATCH_INPUTS = 100_000;

export const BatchTemplateSchema = RunRequestSchema.omit({
  input: true,
  callback: true,
  dry_run: true,
}).openapi("BatchTemplate", {
  description:
    "What every run of the batch shares: the fields of POST /v1/runs except `input` and `callback`. " +
    "`metadata` here is merged under each input's own.",
  example: {
    processor: "lite",
    task_spec: {
      output_schema: {
        type: "json",
        json_schema: {
          type: "object",
          properties: { ceo: { type: "string", description: "The CEO's full name" } },
          required: ["ceo"],
          additionalProperties: false,
        },
      },
    },
  },
});

export const BatchInputSchema = z
  .object({ input: RunTemplateFields.input, metadata: MetadataSchema.optional() })
  .strict()
  .openapi("BatchInput", { example: { input: "Who is the CEO of Acme Corp?", metadata: { row: 1 } } });

/**
 * The inputs are parsed one by one (services/batches.ts), not by the route's schema, so that a bad
 * input is refused by its index, or skipped with `skip_invalid`, instead of failing the whole body.
 */
const InputList = (max: number, description: string) =>
  z
    .array(z.unknown())
    .max(max, { error: `at most ${max.toLocaleString("en")} inputs in one request` })
    .openapi({
      type: "array",
      maxItems: max,
      items: { $ref: "#/components/schemas/BatchInput" },
      description,
    });

export const BatchCallbackSchema = z
  .object({
    url: z.string().openapi({ example: "https://example.com/hooks/taskrelay" }),
    per_run: z.boolean().optional().openapi({
      description:
        "Also send each run's own callback (`run.completed`, `run.failed`) to this URL. Default false.",
    }),
  })
  .strict()
  .openapi("BatchCallback", {
    description: "Where taskrelay POSTs `batch.completed`, signed (Standard Webhooks).",
  });

export const BatchRequestSchema = z
  .object({
    name: z.string().min(1).max(200).optional().openapi({ example: "accounts-2026-12" }),
    template: BatchTemplateSchema,
    inputs: InputList(
      MAX_BATCH_REQUEST_INPUTS,
      "Up to 10,000 inputs; more with POST /v1/batches/{id}/inputs while the batch is open (100,000 in all).",
    ).optional(),
    callback: BatchCallbackSchema.optional(),
    open: z
      .boolean()
      .optional()
      .openapi({
        description:
          "Keep the batch open for more inputs (POST /v1/batches/{id}/inputs) until POST /v1/batches/{id}/close. " +
          "Default false: the batch is closed with the inputs of this request.",
      }),
    skip_invalid: z.boolean().optional().openapi({
      description:
        "Submit the inputs that pass and report the refused ones in `refused`, instead of refusing the whole request. Default false.",
    }),
    dry_run: z.boolean().optional().openapi({
      description:
        "true: nothing is stored, reserved or submitted; the answer (200) is the checks, the inputs that would be submitted and their cost.",
      example: false,
    }),
  })
  .strict()
  .openapi("BatchRequest", {
    example: {
      name: "accounts-2026-12",
      template: { processor: "lite", task_spec: { output_schema: "The CEO's full name" } },
      inputs: [{ input: "Acme Corp", metadata: { row: 1 } }, { input: "Globex" }],
      callback: { url: "https://example.com/hooks/taskrelay" },
    },
  });

export type BatchRequest = z.infer<typeof BatchRequestSchema>;

export const BatchInputsRequestSchema = z
  .object({
    inputs: InputList(MAX_BATCH_REQUEST_INPUTS, "Up to 10,000 inputs per request, 100,000 in the batch."),
    skip_invalid: z.boolean().optional().openapi({ description: "As for POST /v1/batches." }),
  })
  .strict()
  .openapi("BatchInputsRequest", {
    example: { inputs: [{ input: "Initech", metadata: { row: 3 } }] },
  });

export const RefusedInputSchema = z
  .object({
    index: z
      .number()
      .int()
      .openapi({ description: "The input's position in the request's `inputs`, from 0." }),
    details: z.array(z.object({ path: z.string().optional(), message: z.string() })).openapi({
      description: "Every problem with it, as a 422 would list them.",
    }),
  })
  .openapi("RefusedInput");

const count = (description: string) => z.number().int().openapi({ description });

export const BatchCountsSchema = z
  .object({
    total: count("Runs in the batch (accepted inputs)."),
    submitting: count("Not yet accepted by Parallel."),
    queued: count("At Parallel, not started."),
    running: count("At Parallel, running."),
    completed: count("Completed (the result may still be on its way: see result_available on the run)."),
    failed: count("Failed at Parallel, or never accepted by it."),
    cancelled: count("Cancelled with the batch before being sent, or at Parallel."),
    rejected: count("Refused by Parallel."),
    expired: count("No terminal status from Parallel in time."),
    other: count("Any other status (action_required, cancelling)."),
  })
  .openapi("BatchCounts");

export const BatchSchema = z
  .object({
    id: z.string().openapi({ example: "bat_01JD0Q4M3ZT6B3X9Y8W7V6U5T4" }),
    name: z.string().nullable().openapi({ description: "As given at creation; null if none." }),
    status: z.enum(BATCH_STATUSES).openapi({
      description:
        "open (takes more inputs; those it has are submitted meanwhile), submitting (closed, inputs still being sent to Parallel), " +
        "running (every input at Parallel or ended), completed (closed and every run finished), cancelled.",
    }),
    processor: z.string().openapi({ example: "lite" }),
    counts: BatchCountsSchema,
    callback: BatchCallbackSchema.nullable(),
    eta_at: Timestamp.nullable().openapi({
      description:
        "When the last run should be finished, at the latest: the processor's maximum latency after the last input reaches Parallel. " +
        "null once nothing is left to run.",
    }),
    taskgroup_id: z
      .string()
      .nullable()
      .openapi({ description: "Parallel's Task Group of the batch, once created." }),
    created_at: Timestamp,
    updated_at: Timestamp,
    closed_at: Timestamp.nullable(),
    cancelled_at: Timestamp.nullable(),
    completed_at: Timestamp.nullable(),
    refused: z.array(RefusedInputSchema).optional().openapi({
      description: "With skip_invalid: the inputs of this request that were not accepted, and why.",
    }),
    cost_usd: z.number().optional().openapi({
      description: "GET /v1/batches/{id}: what the batch's runs Parallel accepted cost (the usage rollup).",
      example: 0.05,
    }),
  })
  .openapi("Batch");

export const BatchDryRunSchema = z
  .object({
    dry_run: z.literal(true),
    would_submit: z.boolean().openapi({
      description: "Whether the same request without dry_run would store and submit a new batch now.",
      example: true,
    }),
    processor: z.string().openapi({ example: "lite" }),
    inputs: z.number().int().openapi({
      description: "The inputs that would be stored and submitted (with skip_invalid, those that pass).",
      example: 2,
    }),
    cost_usd: z
      .number()
      .openapi({ description: "What those inputs would cost once accepted.", example: 0.01 }),
    checks: z
      .array(
        z.object({
          check: z.enum(["request", "idempotency", "previous_interaction_id", "budget"]),
          passed: z.boolean(),
          message: z.string().openapi({ example: "the key has no monthly budget" }),
        }),
      )
      .openapi({ description: "Each check the batch request goes through, and its outcome." }),
    budget: BudgetSchema,
    refused: z.array(RefusedInputSchema).optional().openapi({
      description: "With skip_invalid: the inputs that would not be accepted, and why.",
    }),
  })
  .openapi("BatchDryRun", {
    description: "What POST /v1/batches would do; nothing was stored, reserved or submitted.",
  });

export type BatchView = z.infer<typeof BatchSchema>;

export const BatchListSchema = z
  .object({ data: z.array(BatchSchema), next_cursor: NextCursor })
  .openapi("BatchList");
