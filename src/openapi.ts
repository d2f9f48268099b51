// The OpenAPI 3.1 document at /openapi.json: the routes' own definitions, plus what belongs to the
// API as a whole and is kept here in one place: the overview, tags, an error example per status that
// matches the closed set of codes, the signed Parallel webhook's request, and the callback taskrelay
// sends (as an OpenAPI webhook).
import { type OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppEnv } from "./app-env";
import { ERROR_STATUS, type ErrorCode } from "./errors";
import { RunOutputSchema, RunSchema } from "./schemas/runs";

const OVERVIEW = `Run [Parallel Task API](https://docs.parallel.ai) research from HTTP. taskrelay checks a run against
Parallel's limits before any money is spent, stores it, creates it at Parallel with a completion webhook, fetches the
result when Parallel says it is done, and POSTs it to your callback URL — signed with
[Standard Webhooks](https://www.standardwebhooks.com) — until your server takes it.

**Authentication.** Send your API key as \`Authorization: Bearer trk_…\`. Managing keys takes the deployment's admin
token instead. A key sees only its own runs, schedules and deliveries; another key's resource answers 404, exactly as
an unknown id.

**Errors.** Every error has one shape: \`{"error": {"code", "message", "request_id", "details": [{"path", "message"}]}}\`.
\`code\` is one of a closed set (below, per status); \`details\` lists every problem, each at its JSON path.

**Pages.** Lists are newest first. Pass a page's \`next_cursor\` back as \`cursor\`; it is null on the last page.

**Callbacks.** A finished run with a callback URL is POSTed there (see *Webhooks*: \`runResult\`), retried with
backoff until a 2xx, then dead-lettered (\`GET /v1/deliveries?status=dead\`, \`POST /v1/deliveries/{id}/retry\`).

**Progress.** \`GET /v1/runs/{id}/progress\` streams a run's progress as server-sent events. The dashboard at
\`/dashboard\` shows runs, results, schedules and deliveries in a browser.`;

const TAGS = [
  {
    name: "Runs",
    description: "Start research runs, read them, their results, timelines and live progress.",
  },
  { name: "Schedules", description: "Run templates that recur on a cron in their own time zone." },
  {
    name: "Batches",
    description: "One template, many inputs: each an ordinary run, sent to Parallel as one Task Group.",
  },
  {
    name: "Deliveries",
    description: "Signed callbacks of finished runs: every attempt, dead letters, retries.",
  },
  { name: "Keys", description: "API keys and their callback signing secrets (admin token)." },
  { name: "Usage", description: "Runs and spend per day, processor, schedule or batch; the monthly budget." },

  { name: "Batches", description: "Many inputs run with one template: progress, results as a file." },
  { name: "Parallel", description: "Called by Parallel, not by you." },
  { name: "System", description: "Health." },
];

function tagFor(path: string): string {
  if (path.startsWith("/v1/schedules")) return "Schedules";
  if (path.startsWith("/v1/batches")) return "Batches";
  if (path.startsWith("/v1/deliveries") || path.endsWith("/deliveries")) return "Deliveries";
  if (path.startsWith("/v1/runs")) return "Runs";
  if (path.startsWith("/v1/keys")) return "Keys";
  if (path.startsWith("/v1/usage")) return "Usage";

  if (path.startsWith("/v1/batches")) return "Batches";
  if (path.startsWith("/webhooks/")) return "Parallel";
  return "System";
}

/** A realistic error for each code; the example of a status is its most common code. */
const ERROR_EXAMPLES: Partial<
  Record<ErrorCode, { message: string; details?: Array<Record<string, unknown>> }>
> = {
  invalid_json: { message: "The body is not valid JSON: Unexpected end of JSON input" },
  unauthorized: { message: "Send your taskrelay API key as `Authorization: Bearer <key>`." },
  forbidden: {
    message: "This form was not sent from a current dashboard page. Reload the page and try again.",
  },
  not_found: { message: "No run run_01JD0Q4M3ZT6B3X9Y8W7V6U5T4." },
  method_not_allowed: { message: "/v1/runs does not take PUT; it takes GET, POST, HEAD." },
  result_not_ready: {
    message:
      "Run run_01JD0Q4M3ZT6B3X9Y8W7V6U5T4 is running; its result is not stored yet. Retry later, pass ?wait=N (up to 60 seconds), or give a callback URL.",
    details: [{ message: "not ready", status: "running" }],
  },
  payload_too_large: { message: "The body is larger than 1048576 bytes (1 MB)." },
  unsupported_media_type: { message: "Send the body as JSON with `Content-Type: application/json`." },
  validation_failed: {
    message:
      'The request has 1 problem: processor: unknown processor "fastest"; choose one of: lite, base, …',
    details: [{ path: "processor", message: 'unknown processor "fastest"; choose one of: lite, base, …' }],
  },
  rate_limited: { message: "Too many requests; retry after the time in Retry-After." },
  budget_exceeded: {
    message:
      "This run would cost $0.1 and take the key past its monthly budget of $50 ($49.95 spent this month); the budget resets at 2027-01-01T00:00:00.000Z.",
    details: [
      {
        message: "over the monthly budget",
        limit_usd: 50,
        spent_usd: 49.95,
        cost_usd: 0.1,
        remaining_usd: 0.05,
        resets_at: "2027-01-01T00:00:00.000Z",
      },
    ],
  },
  internal_error: {
    message: "taskrelay failed to handle this request; the request id finds it in the logs.",
  },
};

const EXAMPLE_CODE_BY_STATUS: Record<number, ErrorCode> = {
  400: "invalid_json",
  401: "unauthorized",
  402: "budget_exceeded",
  403: "forbidden",
  404: "not_found",
  405: "method_not_allowed",
  409: "result_not_ready",
  413: "payload_too_large",
  415: "unsupported_media_type",
  422: "validation_failed",
  429: "rate_limited",
  500: "internal_error",
};

function errorExample(status: number) {
  const code = EXAMPLE_CODE_BY_STATUS[status] ?? "internal_error";
  const example = ERROR_EXAMPLES[code] ?? { message: code };
  return {
    error: {
      code,
      message: example.message,
      request_id: "req_01JD0Q4M3ZT6B3X9Y8W7V6U5T4",
      details: example.details ?? [],
    },
  };
}

/** The codes a status can carry, for the response's description. */
function codesOf(status: number): ErrorCode[] {
  return (Object.entries(ERROR_STATUS) as Array<[ErrorCode, number]>)
    .filter(([, s]) => s === status)
    .map(([c]) => c);
}

const SIGNATURE_HEADERS = [
  {
    name: "webhook-id",
    in: "header",
    required: true,
    description: "The delivery's id; the same on every retry of one event.",
    schema: { type: "string", example: "whevent_561376a8fa19841c75e74ffa203293a5" },
  },
  {
    name: "webhook-timestamp",
    in: "header",
    required: true,
    description:
      "Unix seconds when the attempt was signed; refused outside the tolerance window (default 300 s).",
    schema: { type: "string", example: "1764325860" },
  },
  {
    name: "webhook-signature",
    in: "header",
    required: true,
    description:
      "Space-separated `v1,<base64 HMAC-SHA256>` signatures of `<webhook-id>.<webhook-timestamp>.<body>`.",
    schema: { type: "string", example: "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=" },
  },
];

export const ParallelWebhookSchema = z
  .object({
    type: z.literal("task_run.status"),
    timestamp: z.string().openapi({ example: "2026-11-28T10:31:37.114Z" }),
    data: z
      .object({
        run_id: z.string().openapi({ example: "trun_9907962f83aa4d9d98fd7f4bf745d654" }),
        status: z.string().openapi({ example: "completed" }),
        is_active: z.boolean().openapi({ example: false }),
        metadata: z
          .record(z.string(), z.unknown())
          .nullable()
          .openapi({ description: "Echoes the run's metadata; taskrelay's own key matches the run." }),
      })
      .catchall(z.unknown())
      .openapi({ description: "Parallel's TaskRun." }),
  })
  .openapi("ParallelWebhook", {
    description: "Parallel's `task_run.status` webhook, as Parallel sends it.",
    example: {
      type: "task_run.status",
      timestamp: "2026-11-28T10:31:37.114Z",
      data: {
        run_id: "trun_9907962f83aa4d9d98fd7f4bf745d654",
        status: "completed",
        is_active: false,
        processor: "base",
        metadata: { taskrelay_run_id: "run_01JD0Q4M3ZT6B3X9Y8W7V6U5T4" },
      },
    },
  });

export const CallbackEventSchema = z
  .object({
    type: z.enum(["run.completed", "run.failed"]).openapi({
      description:
        "`run.completed` with `output`; `run.failed` for every other terminal status, with `error`.",
    }),
    timestamp: z
      .string()
      .openapi({ description: "When the run finished.", example: "2026-11-28T10:31:37.114Z" }),
    data: z
      .object({
        run: RunSchema,
        output: RunOutputSchema.nullable().openapi({
          description:
            "The output, up to 256 KiB of JSON (262,144 bytes). A larger output is not sent: it is null, and " +
            "`output_url` and `output_bytes` are set instead.",
        }),
        output_url: z
          .url()
          .optional()
          .openapi({
            description:
              "Only for an output over 256 KiB: GET it with the API key (Authorization: Bearer …); it answers as " +
              "GET /v1/runs/{id}/result, `{run, output}` with the whole output.",
            example: "https://taskrelay.example.workers.dev/v1/runs/run_01JD0Q4M3ZT6B3X9Y8W7V6U5T4/result",
          }),
        output_bytes: z.number().int().optional().openapi({
          description: "Only with `output_url`: the size of the output's JSON in bytes.",
          example: 5_000_000,
        }),
        error: z
          .object({ code: z.string(), message: z.string() })
          .catchall(z.unknown())
          .nullable()
          .openapi({ description: "Why the run did not complete; null when it did." }),
      })
      .openapi({ description: "The run as GET /v1/runs/{id} shows it, its output, and its error." }),
  })
  .openapi("CallbackEvent", {
    description:
      "What taskrelay POSTs to a run's callback URL. Signed with the API key's secret (Standard Webhooks: `webhook-id`, " +
      "`webhook-timestamp`, `webhook-signature`); the `webhook-id` is the delivery id, the same on every attempt.",
  });

export const BatchCallbackEventSchema = z
  .object({
    type: z.literal("batch.completed"),
    timestamp: z
      .string()
      .openapi({ description: "When the batch completed.", example: "2026-11-28T11:02:10.000Z" }),
    data: z
      .object({
        batch: z.object({
          id: z.string().openapi({ example: "bat_01JD0Q4M3ZT6B3X9Y8W7V6U5T4" }),
          name: z.string().nullable(),
          status: z.enum(["completed", "cancelled"]),
          counts: z.record(z.string(), z.number().int()).openapi({
            description: "`total` and the runs in each status.",
            example: { total: 5000, completed: 4991, failed: 9 },
          }),
          created_at: z.string(),
          closed_at: z.string().nullable(),
          cancelled_at: z.string().nullable(),
          completed_at: z.string().nullable(),
        }),
        results_url: z.object({
          jsonl: z.url().openapi({
            example:
              "https://taskrelay.example.workers.dev/v1/batches/bat_01JD0Q4M3ZT6B3X9Y8W7V6U5T4/results?format=jsonl",
          }),
          csv: z.url().openapi({
            example:
              "https://taskrelay.example.workers.dev/v1/batches/bat_01JD0Q4M3ZT6B3X9Y8W7V6U5T4/results?format=csv",
          }),
        }),
      })
      .openapi({ description: "The batch with its counts, and where to download its results." }),
  })
  .openapi("BatchCallbackEvent", {
    description:
      "POSTed once to a batch's callback URL when the batch is closed and every run is finished; signed and retried as a run's callback.",
  });

type Operation = {
  tags?: string[];
  parameters?: unknown[];
  requestBody?: unknown;
  responses: Record<
    string,
    { description: string; content?: Record<string, { schema?: unknown; example?: unknown }> }
  >;
};

/** Serves GET /openapi.json; call once all routes are registered. */
export function registerOpenApi(app: OpenAPIHono<AppEnv>) {
  app.openAPIRegistry.register("CallbackEvent", CallbackEventSchema);
  app.openAPIRegistry.register("BatchCallbackEvent", BatchCallbackEventSchema);
  app.openAPIRegistry.register("ParallelWebhook", ParallelWebhookSchema);
  // Built once per origin (the routes do not change while the Worker runs).
  const built = new Map<string, ReturnType<typeof buildOpenApiDocument>>();
  app.get("/openapi.json", (c) => {
    const origin = new URL(c.req.url).origin;
    let document = built.get(origin);
    if (!document) {
      document = buildOpenApiDocument(app, origin);
      if (built.size < 8) built.set(origin, document);
    }
    return c.json(document);
  });
}

/** Builds the document for a request to `origin` (the server Scalar's "try it" sends to). */
export function buildOpenApiDocument(app: OpenAPIHono<AppEnv>, origin: string) {
  const document = app.getOpenAPI31Document({
    openapi: "3.1.0",
    info: { title: "taskrelay", version: "0.1.0", description: OVERVIEW },
    servers: [{ url: origin, description: "This deployment" }],
    tags: TAGS,
  });
  for (const [path, item] of Object.entries(document.paths ?? {})) {
    for (const operation of Object.values(item as Record<string, Operation>)) {
      operation.tags = [tagFor(path)];
      for (const [status, response] of Object.entries(operation.responses)) {
        const code = Number(status);
        const json = response.content?.["application/json"];
        if (code >= 400 && json) {
          json.example = errorExample(code);
          response.description = `${response.description} Codes: ${codesOf(code)
            .map((c) => `\`${c}\``)
            .join(", ")}.`;
        }
      }
      if (path === "/webhooks/parallel") {
        operation.parameters = SIGNATURE_HEADERS;
        operation.requestBody = {
          required: true,
          content: { "application/json": { schema: { $ref: "#/components/schemas/ParallelWebhook" } } },
        };
      }
    }
  }
  return {
    ...document,
    webhooks: {
      runResult: {
        post: {
          tags: ["Deliveries"],
          summary: "A finished run, POSTed to its callback URL",
          description:
            "Answer 2xx to take it. Any other answer or no answer within 15 s is retried with backoff (a 410 stops at once), " +
            "then the delivery is dead. Verify the signature with your key's `signing_secret` and any Standard Webhooks library; " +
            "deduplicate on `webhook-id`.",
          parameters: SIGNATURE_HEADERS.map((h) =>
            h.name === "webhook-id"
              ? { ...h, schema: { type: "string", example: "dlv_01JD0Q4M3ZT6B3X9Y8W7V6U5T4" } }
              : h,
          ),
          requestBody: {
            required: true,
            content: { "application/json": { schema: { $ref: "#/components/schemas/CallbackEvent" } } },
          },
          responses: { "2XX": { description: "Taken: no further attempts." } },
        },
      },
      batchCompleted: {
        post: {
          tags: ["Batches"],
          summary: "A batch completed, POSTed to the batch's callback URL",
          description:
            "Once per batch, when it is closed and every run is finished (and each run's own callback before it, with " +
            "`per_run: true`). Signed, retried and deduplicated exactly as a run's callback.",
          parameters: SIGNATURE_HEADERS,
          requestBody: {
            required: true,
            content: { "application/json": { schema: { $ref: "#/components/schemas/BatchCallbackEvent" } } },
          },
          responses: { "2XX": { description: "Taken: no further attempts." } },
        },
      },
    },
  };
}
