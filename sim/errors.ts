// One error envelope for every refusal: {"type":"error","error":{"ref_id","message","detail"}}.
// Messages are the OAS response descriptions (reference §2.1, §2.2, §2.4).

import { randomUUID } from "node:crypto";
import type { ErrorResponse } from "./types.ts";

export const MESSAGES = {
  unauthorized: "Unauthorized: invalid or missing credentials",
  invalidProcessor: "Forbidden: invalid processor in request",
  validation: "Unprocessable content: request validation error",
  tooManyRequests: "Too many requests: quota temporarily exceeded",
  runNotFound: "Run id not found",
  groupNotFound: "TaskGroup not found",
  tooManyInputs: "Bad request: at most 1000 inputs per request",
  resultNotFound: "Run failed or run id not found",
  resultTimeout: "Request timed out; run still active",
  notFound: "Not found",
  internal: "Internal server error",
  badGateway: "Bad gateway",
  unavailable: "Service unavailable",
  runFailed: "Task execution failed",
} as const;

export function errorBody(message: string, detail: Record<string, unknown> | null = null): ErrorResponse {
  return { type: "error", error: { ref_id: randomUUID(), message, detail } };
}

export function jsonResponse(body: unknown, status: number, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

export function errorResponse(
  status: number,
  message: string,
  detail: Record<string, unknown> | null = null,
  headers: Record<string, string> = {},
): Response {
  return jsonResponse(errorBody(message, detail), status, headers);
}

/** One item of a 422's detail.errors, shaped like FastAPI's validation errors. */
export interface ValidationIssue {
  loc: (string | number)[];
  msg: string;
  type: string;
}

/** FastAPI's HTTPValidationError, which the OAS declares for the task-group endpoints' 422. */
export function httpValidationError(issues: ValidationIssue[]): Response {
  return jsonResponse({ detail: issues }, 422);
}
