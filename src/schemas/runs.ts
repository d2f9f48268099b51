// The run request and the run as the API shows it. JSON fields are snake_case, as in Parallel's API.
import { z } from "@hono/zod-openapi";
import { RUN_STATUSES } from "../db/runs";
import { PROCESSOR_NAMES } from "../parallel/processors";
import { NextCursor, Timestamp } from "./common";
import { BudgetSchema } from "./usage";

const JsonObject = z.record(z.string(), z.unknown());

/** A JSON schema definition needs json_schema exactly when its type is "json". */
function checkJsonSchemaPresence(
  value: { type?: string | undefined; json_schema?: unknown },
  ctx: z.RefinementCtx,
): void {
  const type = value.type ?? (value.json_schema ? "json" : undefined);
  if (type === "json" && !value.json_schema) {
    ctx.addIssue({ code: "custom", path: ["json_schema"], message: 'a "json" schema needs json_schema' });
  }
  if (type !== "json" && value.json_schema) {
    ctx.addIssue({
      code: "custom",
      path: ["json_schema"],
      message: `json_schema does not belong in a "${type}" schema`,
    });
  }
}

// Hints for the usual mistakes, as the schemas' own error messages (src/schemas/issues.ts words the rest).
const WRAP_HINT = 'wrap a JSON Schema as {"type": "json", "json_schema": <the schema>}';
const JSON_SCHEMA_TYPES = ["object", "array", "string", "number", "integer", "boolean", "null"];
const JSON_SCHEMA_KEYWORDS = ["properties", "items", "required", "additionalProperties", "$schema", "$defs"];

/** An object whose unknown keys are JSON Schema keywords is a bare JSON Schema. */
const bareSchemaHint = (issue: z.core.$ZodRawIssue) =>
  issue.code === "unrecognized_keys" && issue.keys.some((key) => JSON_SCHEMA_KEYWORDS.includes(key))
    ? `looks like a bare JSON Schema; ${WRAP_HINT}`
    : undefined;

const schemaType = (
  types: readonly [string, ...string[]],
  extraHint: (input: unknown) => string | undefined,
) =>
  z.enum(types, {
    error: (issue) => {
      const hint = extraHint(issue.input);
      if (hint) return hint;
      if (typeof issue.input === "string" && JSON_SCHEMA_TYPES.includes(issue.input)) {
        return `must be ${types.map((t) => `"${t}"`).join(", ")}; "${issue.input}" is a JSON Schema type: ${WRAP_HINT}`;
      }
      return undefined;
    },
  });

const schemaFields = {
  json_schema: JsonObject.optional().openapi({ description: "A JSON Schema whose root is an object." }),
  description: z.string().nullish(),
};

const OutputSchemaDefinition = z
  .strictObject(
    {
      type: schemaType(["json", "text", "auto"], () => undefined)
        .optional()
        .openapi({ description: 'Defaults to "json" when json_schema is given.' }),
      ...schemaFields,
    },
    { error: bareSchemaHint },
  )
  .superRefine(checkJsonSchemaPresence);

const InputSchemaDefinition = z
  .strictObject(
    {
      type: schemaType(["json", "text"], (input) =>
        input === "auto"
          ? 'cannot be "auto": Parallel has no auto input schema; omit input_schema, or describe the input as text or {"type": "json", "json_schema": …}'
          : undefined,
      )
        .optional()
        .openapi({
          description: 'Defaults to "json" when json_schema is given. There is no "auto" input schema.',
        }),
      ...schemaFields,
    },
    { error: bareSchemaHint },
  )
  .superRefine(checkJsonSchemaPresence);

/** A bare string is a text schema; the word "auto" alone is almost always meant as the auto schema. */
const textSchema = (hint: string) =>
  z.string().refine((text) => text.trim().toLowerCase() !== "auto", { error: hint });

/** The output schema the documentation's examples use. */
const EXAMPLE_OUTPUT_SCHEMA = {
  type: "json",
  json_schema: {
    type: "object",
    properties: { gdp: { type: "string", description: "GDP in USD, e.g. '$3.1 trillion (2023)'" } },
    required: ["gdp"],
    additionalProperties: false,
  },
};

export const TaskSpecSchema = z
  .object({
    output_schema: z
      .union([
        textSchema(
          'is the text "auto", a text schema that asks for "auto"; the auto schema is {"type": "auto"}',
        ),
        OutputSchemaDefinition,
      ])
      .openapi({
        description:
          'A JSON schema (`{"type": "json", "json_schema": {…}}`), a text description, or `{"type": "auto"}`. ' +
          "A bare string is a text schema. The JSON Schema is checked against the JSON Schema meta-schema.",
      }),
    input_schema: z
      .union([
        textSchema('is the text "auto"; Parallel has no auto input schema: omit input_schema'),
        InputSchemaDefinition,
      ])
      .nullish()
      .openapi({
        description:
          'Optional: describes the input, as text or `{"type": "json", "json_schema": {…}}` (there is no auto input schema). ' +
          "A JSON input is validated against a JSON input schema before the run is stored: each mismatch is a 422 at its path.",
      }),
  })
  .strict()
  .openapi("TaskSpec", {
    example: {
      output_schema: EXAMPLE_OUTPUT_SCHEMA,
    },
  });

export const SourcePolicySchema = z
  .object({
    include_domains: z
      .array(z.string())
      .optional()
      .openapi({ description: "Only these domains or extensions (`.gov`).", example: ["imf.org", ".gov"] }),
    exclude_domains: z
      .array(z.string())
      .optional()
      .openapi({
        description: "Never these; ignored when include_domains is set.",
        example: ["example.com"],
      }),
    after_date: z.string().nullish().openapi({
      description:
        "YYYY-MM-DD. Passed on to Parallel, with a warning on the run: Parallel's docs list it for the Search API only.",
    }),
  })
  .strict()
  .openapi("SourcePolicy");

export const McpServerSchema = z
  .object({
    type: z.literal("url").optional(),
    name: z.string().min(1),
    url: z.url(),
    headers: z
      .record(z.string(), z.string())
      .nullish()
      .openapi({ description: "Sent to the MCP server; never shown back." }),
    allowed_tools: z.array(z.string()).nullish(),
  })
  .strict();

export const MetadataSchema = z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).openapi({
  description:
    "Keys up to 16 characters, string values up to 512 (counted in Unicode code points, as Parallel counts).",
  example: { customer: "acme" },
});

export const CallbackSchema = z
  .object({ url: z.string().openapi({ example: "https://example.com/hooks/taskrelay" }) })
  .strict()
  .openapi("Callback", {
    description: "Where taskrelay POSTs the run's result, signed (Standard Webhooks).",
  });

/** What a research run is: the same for POST /v1/runs and a schedule's template. */
export const RunTemplateFields = {
  processor: z
    .string()
    .min(1)
    .openapi({ example: "base", description: `One of: ${PROCESSOR_NAMES.join(", ")}.` }),
  input: z
    .union([z.string().min(1), JsonObject])
    .openapi({ description: "Text, or a JSON object.", example: "What was the GDP of France in 2023?" }),
  task_spec: TaskSpecSchema.optional(),
  metadata: MetadataSchema.optional(),
  source_policy: SourcePolicySchema.optional(),
};

export const RunRequestSchema = z
  .object({
    ...RunTemplateFields,
    previous_interaction_id: z.string().min(1).optional().openapi({
      description:
        "Build on an earlier run's research: the `interaction_id` of one of your own runs (404 otherwise).",
    }),
    enable_events: z
      .boolean()
      .optional()
      .openapi({ description: "Frequent progress events (adds Parallel's events beta)." }),
    mcp_servers: z
      .array(McpServerSchema)
      .optional()
      .openapi({ description: "MCP servers Parallel may call during the run (adds Parallel's MCP beta)." }),
    callback: CallbackSchema.nullish().openapi({
      description: "null or absent: no callback.",
      example: { url: "https://example.com/hooks/taskrelay" },
    }),
    dry_run: z.boolean().optional().openapi({
      description:
        "true: nothing is stored, reserved or submitted; the answer (200) is the checks and what the run would cost.",
      example: false,
    }),
  })
  .strict()
  .openapi("RunRequest", {
    example: {
      processor: "base",
      input: "What was the GDP of France in 2023?",
      task_spec: {
        output_schema: EXAMPLE_OUTPUT_SCHEMA,
      },
      metadata: { customer: "acme" },
      callback: { url: "https://example.com/hooks/taskrelay" },
    },
  });

export type RunRequest = z.infer<typeof RunRequestSchema>;

export const RunErrorSchema = z
  .object({
    code: z.string().openapi({
      description:
        "parallel_failed, parallel_rejected, submit_failed, expired, … (why the run ended without a result).",
    }),
    message: z.string().openapi({ description: "What happened, in words." }),
    detail: z.unknown().optional().openapi({ description: "Parallel's own detail, when it gave one." }),
  })
  .openapi("RunError", { example: { code: "parallel_failed", message: "Task execution failed" } });

export const RunSchema = z
  .object({
    id: z.string().openapi({ example: "run_01JD0Q4M3ZT6B3X9Y8W7V6U5T4" }),
    status: z.enum(RUN_STATUSES).openapi({
      description:
        "submitting (stored, not yet accepted by Parallel), queued/running (at Parallel), completed, failed, cancelled, rejected (Parallel refused it), expired (no terminal status in time).",
    }),
    processor: z.string().openapi({ example: "base" }),
    parallel_run_id: z.string().nullable().openapi({ example: "trun_9907962f83aa4d9d98fd7f4bf745d654" }),
    interaction_id: z.string().nullable().openapi({
      description: "Pass it as another run's previous_interaction_id to build on this run's research.",
      example: "trun_9907962f83aa4d9d98fd7f4bf745d654",
    }),
    previous_interaction_id: z
      .string()
      .nullable()
      .openapi({ description: "The interaction this run built on." }),
    schedule_id: z
      .string()
      .nullable()
      .openapi({ description: "The schedule that started the run; null for a run asked for directly." }),
    batch_id: z
      .string()
      .nullable()
      .openapi({ description: "The batch the run is an input of; null for a run asked for directly." }),
    batch_index: z
      .number()
      .int()
      .nullable()
      .openapi({ description: "The input's position in its batch, from 0; null outside a batch." }),
    metadata: MetadataSchema.nullable(),
    callback: CallbackSchema.nullable(),
    warnings: z.array(z.unknown()).nullable().openapi({
      description:
        "Warnings about the run, `{type, message, detail}`: taskrelay's own first (`detail.source` is `taskrelay`, e.g. an after_date passed on), then Parallel's, as it sent them. null when there are none.",
    }),
    error: RunErrorSchema.nullable(),
    result_available: z
      .boolean()
      .openapi({ description: "The result is stored: GET /v1/runs/{id}/result returns it.", example: true }),
    created_at: Timestamp,
    updated_at: Timestamp,
    submitted_at: Timestamp.nullable(),
    finished_at: Timestamp.nullable(),
    result_stored_at: Timestamp.nullable(),
    output_changed: z.boolean().nullable().openapi({
      description:
        "Scheduled runs with a result: whether the output differs from the schedule's previous successful run. null otherwise.",
    }),
    cost_usd: z.number().openapi({
      description:
        "What the run costs: its processor's price once Parallel accepted it (GET /v1/usage lists the prices' source); 0 while it waits to be accepted and when Parallel refused it.",
      example: 0.01,
    }),
  })
  .openapi("Run");

export type RunView = z.infer<typeof RunSchema>;

export const RunInputSchema = z
  .object({
    processor: z.string().openapi({ example: "base" }),
    input: z
      .union([z.string(), JsonObject])
      .openapi({ description: "As it was asked.", example: "What was the GDP of France in 2023?" }),
    task_spec: JsonObject.nullable().openapi({ description: "As it was asked (see TaskSpec)." }),
    metadata: MetadataSchema.nullable(),
    source_policy: JsonObject.nullable().openapi({ description: "As it was asked (see SourcePolicy)." }),
    previous_interaction_id: z.string().nullable().openapi({ description: "The interaction it builds on." }),
    enable_events: z
      .boolean()
      .nullable()
      .openapi({ description: "null: Parallel's default for the processor." }),
    mcp_servers: z.array(JsonObject).nullable().openapi({ description: "Header values are redacted." }),
    callback: CallbackSchema.nullable(),
  })
  .openapi("RunInput");

export const RunOutputSchema = z
  .object({
    type: z.enum(["json", "text"]),
    content: z.union([z.string(), JsonObject]).openapi({
      description: "An object matching the output schema (json), or text.",
      example: { gdp: "$3.1 trillion (2023)" },
    }),
    basis: z.array(z.unknown()).openapi({ description: "Per field: citations, reasoning, confidence." }),
  })
  .catchall(z.unknown())
  .openapi("RunOutput", { description: "Parallel's output, as it returned it." });

export const RunResultSchema = z.object({ run: RunSchema, output: RunOutputSchema }).openapi("RunResult");

export const RunListSchema = z
  .object({ data: z.array(RunSchema), next_cursor: NextCursor })
  .openapi("RunList");

export const TimelineSchema = z
  .object({
    run_id: z.string().openapi({ example: "run_01JD0Q4M3ZT6B3X9Y8W7V6U5T4" }),
    events: z
      .array(
        z.object({
          at: Timestamp,
          kind: z.string().openapi({
            description:
              "stored, submitted, submit_retry_scheduled, rejected, webhook_received, polled, status_changed, result_fetched, expired, delivery_created, delivery_attempted, delivery_succeeded, delivery_dead, delivery_retried, …",
            example: "result_fetched",
          }),
          detail: z
            .record(z.string(), z.unknown())
            .nullable()
            .openapi({ description: "What the step saw.", example: { output_type: "json" } }),
        }),
      )
      .openapi({ description: "Oldest first." }),
    next_cursor: NextCursor.openapi({
      description: "Pass it as `cursor` for the next (newer) events; null on the last page.",
    }),
  })
  .openapi("RunTimeline");

export const DryRunSchema = z
  .object({
    dry_run: z.literal(true),
    would_submit: z.boolean().openapi({
      description: "Whether the same request without dry_run would submit a new run now.",
      example: true,
    }),
    processor: z.string().openapi({ example: "base" }),
    cost_usd: z.number().openapi({ description: "What the run would cost once accepted.", example: 0.01 }),
    checks: z
      .array(
        z.object({
          check: z.enum(["request", "idempotency", "previous_interaction_id", "budget"]),
          passed: z.boolean(),
          message: z.string().openapi({ example: "the key has no monthly budget" }),
        }),
      )
      .openapi({ description: "Each check a run request goes through, and its outcome." }),
    budget: BudgetSchema,
  })
  .openapi("DryRun", { description: "What POST /v1/runs would do; nothing was stored or submitted." });
