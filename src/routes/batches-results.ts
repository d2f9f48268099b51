import { createRoute, z } from "@hono/zod-openapi";
import { createMiddleware } from "hono/factory";
import type { App } from "../app";
import type { AppEnv } from "../app-env";
import { findActiveKeyByHash } from "../db/keys";
import { ApiError } from "../errors";
import { bearerToken, sameSecret } from "../middleware/auth";
import { ADMIN_SECURITY, API_KEY_SECURITY, errors, IdParamSchema } from "../schemas/common";
import { EXPORT_FORMATS, exportBatchResults } from "../services/batch-export";
import { hashApiKey } from "../services/keys";
import type { Viewer } from "../services/viewer";

/**
 * A key sees its own batches; the admin token sees every key's. The viewer goes in the request's
 * variables for the handler.
 */
function requireKeyOrAdmin() {
  return createMiddleware<AppEnv & { Variables: { viewer: Viewer } }>(
    async function requireKeyOrAdmin(c, next) {
      const token = bearerToken(c.req.header("authorization"));
      if (!token) {
        throw new ApiError(
          "unauthorized",
          "Send your taskrelay API key (or the admin token) as `Authorization: Bearer <key>`.",
        );
      }
      const admin = c.var.services.config.ADMIN_TOKEN;
      if (admin && (await sameSecret(token, admin))) {
        c.set("viewer", { kind: "admin" });
        return next();
      }
      const key = await findActiveKeyByHash(c.var.services.db, await hashApiKey(token));
      if (!key) throw new ApiError("unauthorized", "This API key is unknown or has been revoked.");
      c.set("apiKey", key);
      c.set("viewer", { kind: "key", apiKeyId: key.id });
      await next();
    },
  );
}

export const getBatchResultsRoute = createRoute({
  method: "get",
  path: "/v1/batches/{id}/results",
  summary: "Download a batch's results",
  description:
    "One line per input, in input order: JSONL (`{index, run_id, status, input, output, citations, error}`; `output` as " +
    "GET /v1/runs/{id}/result gives it, `citations` the basis's citation URLs) or CSV (RFC 4180, UTF-8 with a BOM: " +
    "index, run_id, status, input, one column per output field — nested fields joined with `.`, arrays as JSON — " +
    "citations as space-separated URLs, and the error's message). The CSV's output columns come from the template's JSON " +
    "output schema, else from the first runs' outputs. Streamed as it is read, whatever the batch's size; a run not " +
    "finished yet has its status and empty output. A key sees its own batches, the admin token every key's.\n\n" +
    "**Resuming.** One request reads at most the Worker's per-invocation budget of D1 pages (a page is up to 5,000 " +
    "runs or about 8 MB of inputs and inline outputs). An export that needs more is cut short, and then its last line " +
    'is not a result: in JSONL `{"cut":{"after":<index>,"next":"<path>"}}`, in CSV a record whose first cell is ' +
    "`#cut`, then `<index>`, then `<path>`. Request `next` (the same URL with `after=<index>`) for the rest: it " +
    "starts at the input after `<index>` (a CSV part has its own header row). A file without that line is complete.",
  security: [...API_KEY_SECURITY, ...ADMIN_SECURITY],
  middleware: [requireKeyOrAdmin()] as const,
  request: {
    params: IdParamSchema("bat", "bat_01JD0Q4M3ZT6B3X9Y8W7V6U5T4"),
    query: z.object({
      format: z
        .enum(EXPORT_FORMATS)
        .default("jsonl")
        .openapi({ description: "jsonl (the default) or csv.", example: "csv" }),
      after: z.coerce.number().int().min(-1).default(-1).openapi({
        description:
          "Only the inputs after this index: to resume an export that was cut short (its last line gives the index).",
        example: 24999,
      }),
    }),
  },
  responses: {
    200: {
      description: "The results file, streamed.",
      content: {
        "application/x-ndjson": {
          schema: z.string().openapi({
            example:
              '{"index":0,"run_id":"run_…","status":"completed","input":{"company":"Acme"},"output":{"type":"json","content":{"founded":1947},"basis":[]},"citations":[],"error":null}\n',
          }),
        },
        "text/csv": {
          schema: z.string().openapi({
            example:
              'index,run_id,status,input,founded,citations,error\r\n0,run_…,completed,"{""company"":""Acme""}",1947,,\r\n',
          }),
        },
      },
    },
    401: errors[401],
    404: errors[404],
    422: errors[422],
    500: errors[500],
  },
});

export function registerBatchResults(app: App) {
  app.openapi(getBatchResultsRoute, async (c) => {
    const viewer = (c as unknown as { var: { viewer: Viewer } }).var.viewer;
    const exported = await exportBatchResults(
      c.var.services,
      viewer,
      c.req.valid("param").id,
      c.req.valid("query").format,
      c.req.valid("query").after,
    );
    const response = c.body(exported.body, 200, {
      "content-type": exported.contentType,
      "content-disposition": `attachment; filename="${exported.filename}"`,
    });
    // A file written by hand: zod-openapi types only c.json() bodies.
    return response as never;
  });
}
