// The run request and the run as the API shows it. JSON fields are snake_case, as in Parallel's API.
import { z } from "@hono/zod-openapi";
import { RUN_STATUSES } from "../db/runs";
import { PROCESSOR_NAMES } from "../parallel/processors";
import { Timestamp } from "./common";

const JsonObject = z.record(z.string(), z.unknown());

const SchemaDefinition = z
  .object({
    type: z
      .enum(["json", "text", "auto"])
      .optional()
      .openapi({ description: 'Defaults to "json" when json_schema is given.' }),
    json_schema: JsonObject.optional().openapi({ description: "A JSON Schema whose root is an object." }),
    description: z.string().nullish(),
  })
  .strict()
  .superRefine((value, ctx) => {
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
  });

export const TaskSpecSchema = z
  .object({
    output_schema: z.union([z.string(), SchemaDefinition]).openapi({
      description: 'A JSON schema, a text description, or `{type: "auto"}`. A bare string is a text schema.',
    }),
    input_schema: z.union([z.string(), SchemaDefinition]).nullish(),
  })
  .strict()
  .openapi("TaskSpec", {
    example: {
      output_schema: {
        type: "json",
        json_schema: {
          type: "object",
          properties: { gdp: { type: "string", description: "GDP in USD, e.g. '$3.1 trillion (2023)'" } },
          required: ["gdp"],
          additionalProperties: false,
        },
      },
    },
  });

export const SourcePolicySchema = z
  .object({
    include_domains: z.array(z.string()).optional(),
    exclude_domains: z.array(z.string()).optional(),
    after_date: z.string().nullish().openapi({ description: "Search API only: refused for Task runs." }),
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

export const MetadataSchema = z
  .record(z.string(), z.union([z.string(), z.number(), z.boolean()]))
  .openapi({
    description: "Keys up to 16 characters, string values up to 512.",
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
    previous_interaction_id: z
      .string()
      .min(1)
      .optional()
      .openapi({ description: "Build on an earlier run's research." }),
    enable_events: z
      .boolean()
      .optional()
      .openapi({ description: "Frequent progress events (adds Parallel's events beta)." }),
    mcp_servers: z.array(McpServerSchema).optional(),
    callback: CallbackSchema.optional(),
  })
  .strict()
  .openapi("RunRequest");

export type RunRequest = z.infer<typeof RunRequestSchema>;

export const RunErrorSchema = z
  .object({ code: z.string(), message: z.string(), detail: z.unknown().optional() })
  .openapi("RunError", { example: { code: "parallel_failed", message: "Task execution failed" } });

export const RunSchema = z
  .object({
    id: z.string().openapi({ example: "run_01JD0Q4M3ZT6B3X9Y8W7V6U5T4" }),
    status: z.enum(RUN_STATUSES).openapi({
      description:
        "submitting (stored, not yet accepted by Parallel), queued/running (at Parallel), completed, failed, cancelled, rejected (Parallel refused it), expired (no terminal status in time).",
    }),
    processor: z.string(),
    parallel_run_id: z.string().nullable().openapi({ example: "trun_9907962f83aa4d9d98fd7f4bf745d654" }),
    interaction_id: z.string().nullable(),
    previous_interaction_id: z.string().nullable(),
    schedule_id: z.string().nullable(),
    metadata: MetadataSchema.nullable(),
    callback: CallbackSchema.nullable(),
    warnings: z
      .array(z.unknown())
      .nullable()
      .openapi({ description: "Parallel's warnings about the run, as it sent them." }),
    error: RunErrorSchema.nullable(),
    result_available: z.boolean(),
    created_at: Timestamp,
    updated_at: Timestamp,
    submitted_at: Timestamp.nullable(),
    finished_at: Timestamp.nullable(),
    result_stored_at: Timestamp.nullable(),
    output_changed: z.boolean().nullable().openapi({
      description:
        "Scheduled runs with a result: whether the output differs from the schedule's previous successful run. null otherwise.",
    }),
  })
  .openapi("Run");

export type RunView = z.infer<typeof RunSchema>;

export const RunInputSchema = z
  .object({
    processor: z.string(),
    input: z.union([z.string(), JsonObject]),
    task_spec: JsonObject.nullable(),
    metadata: MetadataSchema.nullable(),
    source_policy: JsonObject.nullable(),
    previous_interaction_id: z.string().nullable(),
    enable_events: z.boolean().nullable(),
    mcp_servers: z.array(JsonObject).nullable().openapi({ description: "Header values are redacted." }),
    callback: CallbackSchema.nullable(),
  })
  .openapi("RunInput");

export const RunOutputSchema = z
  .object({
    type: z.enum(["json", "text"]),
    content: z.union([z.string(), JsonObject]),
    basis: z.array(z.unknown()).openapi({ description: "Per field: citations, reasoning, confidence." }),
  })
  .catchall(z.unknown())
  .openapi("RunOutput", { description: "Parallel's output, as it returned it." });

export const RunResultSchema = z.object({ run: RunSchema, output: RunOutputSchema }).openapi("RunResult");

export const RunListSchema = z
  .object({ data: z.array(RunSchema), next_cursor: z.string().nullable() })
  .openapi("RunList");

export const TimelineSchema = z
  .object({
    run_id: z.string(),
    events: z.array(
      z.object({ at: Timestamp, kind: z.string(), detail: z.record(z.string(), z.unknown()).nullable() }),
    ),
  })
  .openapi("RunTimeline");
