// Schemas shared by every route: the error envelope, pagination, security schemes.
import { z } from "@hono/zod-openapi";
import { ERROR_CODES, type ErrorCode } from "../errors";

export const ErrorEnvelopeSchema = z
  .object({
    error: z
      .object({
        code: z.enum(ERROR_CODES as [ErrorCode, ...ErrorCode[]]).openapi({
          description: "One of a closed set; each maps to one HTTP status.",
          example: "validation_failed",
        }),
        message: z.string().openapi({
          example:
            'The request has 1 problem: processor: unknown processor "fastest"; choose one of: lite, base, …',
        }),
        request_id: z.string().openapi({ example: "req_01JD0Q4M3ZT6B3X9Y8W7V6U5T4" }),
        details: z
          .array(
            z
              .object({ path: z.string().optional(), message: z.string() })
              .catchall(z.unknown())
              .openapi({ example: { path: "processor", message: 'unknown processor "fastest"' } }),
          )
          .openapi({ description: "Every problem found, each located by its JSON path where it has one." }),
      })
      .openapi({ description: "What went wrong: a code of the closed set, words, and where to look." }),
  })
  .openapi("Error", { description: "The one error envelope every endpoint returns." });

const errorResponse = (description: string) => ({
  description,
  content: { "application/json": { schema: ErrorEnvelopeSchema } },
});

/** Error responses to document on a route, by status. */
export const errors = {
  400: errorResponse("The body is not valid JSON."),
  401: errorResponse("Missing, unknown or revoked credentials."),
  402: errorResponse(
    "`budget_exceeded`: the run would take the key past its monthly budget; `details` has the budget, what is spent, the run's cost and when the month resets.",
  ),
  404: errorResponse("No such resource for this key."),
  409: errorResponse("The request conflicts with the resource's state."),
  413: errorResponse("The body is larger than 1 MB."),
  415: errorResponse("The body is not application/json."),
  422: errorResponse("The request is well-formed but invalid; `details` lists every problem."),
  500: errorResponse("taskrelay failed or is misconfigured; the request id finds it in the logs."),
} as const;

export const API_KEY_SECURITY = [{ ApiKey: [] }];
export const ADMIN_SECURITY = [{ AdminToken: [] }];

/**
 * A whole number in a query string, as the document says (`type: integer` between the bounds):
 * decimal digits only. `z.coerce.number()` also took "", " 7", "1e1" and "0x10", and said
 * "expected number, received NaN" for "abc".
 */
export function integerQuery(options: {
  min: number;
  max: number;
  default: number;
  description: string;
  example: number;
}) {
  const range = `a whole number from ${options.min} to ${options.max}`;
  return z
    .string()
    .regex(/^[0-9]{1,9}$/, { error: `must be ${range}` })
    .transform(Number)
    .pipe(
      z
        .number()
        .min(options.min, { error: `must be ${range}` })
        .max(options.max, { error: `must be ${range}` }),
    )
    .optional()
    .transform((value) => value ?? options.default)
    .openapi({
      type: "integer",
      minimum: options.min,
      maximum: options.max,
      default: options.default,
      description: options.description,
      example: options.example,
    });
}

export const LimitQuerySchema = integerQuery({
  min: 1,
  max: 100,
  default: 20,
  description: "Page size, 1 to 100.",
  example: 20,
});

export const CursorQuerySchema = z
  .string()
  .optional()
  .openapi({ description: "The `next_cursor` of the previous page." });

export const IdParamSchema = (prefix: string, example: string) =>
  z.object({
    id: z
      .string()
      .min(1)
      .openapi({ param: { name: "id", in: "path" }, example, description: `A ${prefix}_… id.` }),
  });

export const Timestamp = z.string().openapi({ format: "date-time", example: "2026-11-28T10:31:00.000Z" });

/** The cursor of the next page of a list; null on the last page. */
export const NextCursor = z.string().nullable().openapi({
  description: "Pass it as `cursor` for the next (older) page; null on the last page.",
  example: "cnVuXzAxSkQwUTRNM1pUNkIzWDlZOFc3VjZVNVQ0",
});
