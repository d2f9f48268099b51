// One closed set of error codes, one ApiError, one envelope for every error the API returns.
import type { ContentfulStatusCode } from "hono/utils/http-status";

export const ERROR_STATUS = {
  bad_request: 400,
  invalid_json: 400,
  unauthorized: 401,
  invalid_signature: 401,
  budget_exceeded: 402,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  idempotency_conflict: 409,
  result_not_ready: 409,
  run_failed: 409,
  invalid_state: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  validation_failed: 422,
  parallel_rejected: 422,
  rate_limited: 429,
  internal_error: 500,
  configuration_error: 500,
} as const satisfies Record<string, ContentfulStatusCode>;

export type ErrorCode = keyof typeof ERROR_STATUS;
export const ERROR_CODES = Object.keys(ERROR_STATUS) as ErrorCode[];

/** One problem with the request, located by its JSON path (e.g. `task_spec.output_schema`). */
export interface ErrorDetail {
  path?: string;
  message: string;
  [extra: string]: unknown;
}

export interface ErrorEnvelope {
  error: { code: ErrorCode; message: string; request_id: string; details: ErrorDetail[] };
}

export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly details: ErrorDetail[];
  readonly headers: Record<string, string>;

  constructor(
    code: ErrorCode,
    message: string,
    details: ErrorDetail[] = [],
    headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "ApiError";
    this.code = code;
    this.details = details;
    this.headers = headers;
  }

  get status(): ContentfulStatusCode {
    return ERROR_STATUS[this.code];
  }
}

export function errorEnvelope(error: ApiError, requestId: string): ErrorEnvelope {
  return {
    error: { code: error.code, message: error.message, request_id: requestId, details: error.details },
  };
}

export function validationFailed(details: ErrorDetail[]): ApiError {
  const count = details.length;
  // A message that names its own path ("input must be …") is not prefixed with it again.
  const summary = details
    .slice(0, 3)
    .map((d) => (d.path && !d.message.startsWith(d.path) ? `${d.path}: ${d.message}` : d.message))
    .join("; ");
  const more = count > 3 ? ` (and ${count - 3} more)` : "";
  return new ApiError(
    "validation_failed",
    `The request has ${count} problem${count === 1 ? "" : "s"}: ${summary}${more}`,
    details,
  );
}
