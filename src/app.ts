// Builds the Hono app: middleware, routes, the one error handler, and the OpenAPI document.
import { OpenAPIHono } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { PatternRouter } from "hono/router/pattern-router";
import type { AppEnv } from "./app-env";
import { registerDashboard } from "./dashboard/app";
import { ApiError, errorEnvelope } from "./errors";
import { describeError } from "./log";
import { requestContext } from "./middleware/request-context";
import { validationHook } from "./middleware/validation";
import { registerOpenApi } from "./openapi";
import { registerBatchCancel } from "./routes/batches-cancel";
import { registerBatchClose } from "./routes/batches-close";
import { registerBatchCreate } from "./routes/batches-create";
import { registerBatchGet } from "./routes/batches-get";
import { registerBatchInputs } from "./routes/batches-inputs";
import { registerBatchList } from "./routes/batches-list";
import { registerBatchProgress } from "./routes/batches-progress";

import { registerBatchResults } from "./routes/batches-results";
import { registerDeadLettersReplay } from "./routes/dead-letters-replay";
import { registerDeliveryAttempts } from "./routes/deliveries-attempts";
import { registerDeliveryList } from "./routes/deliveries-list";
import { registerDeliveryRetry } from "./routes/deliveries-retry";
import { registerDocs } from "./routes/docs";
import { registerHealth } from "./routes/health";
import { registerKeyCreate } from "./routes/keys-create";
import { registerKeyList } from "./routes/keys-list";
import { registerKeyRevoke } from "./routes/keys-revoke";
import { registerSigningSecretRotate } from "./routes/keys-rotate-signing-secret";
import { registerKeyUpdate } from "./routes/keys-update";
import { registerParallelWebhook } from "./routes/parallel-webhook";
import { registerRoot } from "./routes/root";
import { registerRunCreate } from "./routes/runs-create";
import { registerRunDeliveries } from "./routes/runs-deliveries";
import { registerRunGet } from "./routes/runs-get";
import { registerRunInput } from "./routes/runs-input";
import { registerRunList } from "./routes/runs-list";
import { registerRunProgress } from "./routes/runs-progress";
import { registerRunResult } from "./routes/runs-result";
import { registerRunTimeline } from "./routes/runs-timeline";
import { registerScheduleCreate } from "./routes/schedules-create";
import { registerScheduleDelete } from "./routes/schedules-delete";
import { registerScheduleGet } from "./routes/schedules-get";
import { registerScheduleList } from "./routes/schedules-list";
import { registerScheduleOccurrences } from "./routes/schedules-occurrences";
import { registerScheduleRuns } from "./routes/schedules-runs";
import { registerScheduleTrigger } from "./routes/schedules-trigger";
import { registerScheduleUpdate } from "./routes/schedules-update";
import { registerUsage } from "./routes/usage";

export const MAX_BODY_BYTES = 1024 * 1024;
/**
 * A batch's inputs (10,000 a request): 10 MB. Parsed, checked and stored, such a body stays well
 * inside the isolate's 128 MB (its text, the parsed inputs, and their JSON for the inserts).
 */
export const MAX_BATCH_BODY_BYTES = 10 * 1024 * 1024;
const BATCH_BODY_PATHS = /^\/v1\/batches(\/[^/]+\/inputs)?\/?$/;

export function createApp() {
  const app = new OpenAPIHono<AppEnv>({ defaultHook: validationHook() });

  app.use("*", requestContext());
  const limitBody = bodyLimit({
    maxSize: MAX_BODY_BYTES,
    onError: () => {
      throw new ApiError("payload_too_large", `The body is larger than ${MAX_BODY_BYTES} bytes (1 MB).`);
    },
  });
  const limitBatchBody = bodyLimit({
    maxSize: MAX_BATCH_BODY_BYTES,
    onError: () => {
      throw new ApiError(
        "payload_too_large",
        `The body is larger than ${MAX_BATCH_BODY_BYTES} bytes (10 MB).`,
      );
    },
  });
  app.use("*", (c, next) =>
    BATCH_BODY_PATHS.test(c.req.path) ? limitBatchBody(c, next) : limitBody(c, next),
  );

  registerRoot(app);
  registerHealth(app);
  registerDeadLettersReplay(app);
  registerKeyCreate(app);
  registerKeyList(app);
  registerKeyRevoke(app);
  registerKeyUpdate(app);
  registerSigningSecretRotate(app);
  registerRunCreate(app);
  registerRunList(app);
  registerRunGet(app);
  registerRunInput(app);
  registerRunResult(app);
  registerRunTimeline(app);
  registerRunProgress(app);
  registerRunDeliveries(app);
  registerDeliveryList(app);
  registerDeliveryRetry(app);
  registerDeliveryAttempts(app);
  registerBatchResults(app);
  registerScheduleCreate(app);
  registerScheduleList(app);
  registerScheduleGet(app);
  registerScheduleUpdate(app);
  registerScheduleDelete(app);
  registerScheduleTrigger(app);
  registerScheduleRuns(app);
  registerScheduleOccurrences(app);
  registerUsage(app);

  registerBatchCreate(app);
  registerBatchList(app);
  registerBatchGet(app);
  registerBatchInputs(app);
  registerBatchClose(app);
  registerBatchCancel(app);
  registerBatchProgress(app);
  registerParallelWebhook(app);
  registerDashboard(app);
  registerDocs(app);

  app.openAPIRegistry.registerComponent("securitySchemes", "ApiKey", {
    type: "http",
    scheme: "bearer",
    description: "A taskrelay API key (`trk_…`), minted by POST /v1/keys.",
  });
  app.openAPIRegistry.registerComponent("securitySchemes", "AdminToken", {
    type: "http",
    scheme: "bearer",
    description: "The deployment's ADMIN_TOKEN secret; only for managing API keys.",
  });
  registerOpenApi(app);

  const allowedMethods = routedMethods(app);
  app.notFound((c) => {
    const path = new URL(c.req.url).pathname;
    const allowed = allowedMethods(path);
    if (allowed.length > 0) {
      throw new ApiError(
        "method_not_allowed",
        `${path} does not take ${c.req.method}; it takes ${allowed.join(", ")}.`,
        [],
        { allow: allowed.join(", ") },
      );
    }
    throw new ApiError("not_found", `No route ${c.req.method} ${path}.`);
  });

  app.onError((error, c) => {
    const apiError = toApiError(error);
    if (apiError.status >= 500) {
      const log = c.var.services?.log;
      const fields = { code: apiError.code, error: describeError(error), path: new URL(c.req.url).pathname };
      if (log) log.error("http.error", fields);
      else console.error(JSON.stringify({ level: "error", event: "http.error", ...fields }));
    }
    for (const [name, value] of Object.entries(apiError.headers)) c.header(name, value);
    return c.json(errorEnvelope(apiError, c.var.requestId ?? "unknown"), apiError.status);
  });

  return app;
}

/**
 * The methods the app routes for a path (GET brings HEAD), for a 405's Allow header. Built on the
 * first miss, once every route is registered; middleware and catch-alls (method ALL) do not count.
 */
function routedMethods(app: OpenAPIHono<AppEnv>): (path: string) => string[] {
  let router: PatternRouter<string> | undefined;
  const methods = new Set<string>();
  return (path) => {
    if (!router) {
      router = new PatternRouter<string>();
      for (const route of app.routes) {
        if (route.method === "ALL") continue;
        router.add(route.method, route.path, route.method);
        methods.add(route.method);
      }
    }
    const routed = router;
    const allowed = [...methods].filter((method) => routed.match(method, path)[0].length > 0);
    if (allowed.includes("GET")) allowed.push("HEAD");
    return allowed;
  };
}

/** Anything thrown becomes one of the closed error codes; an unexpected error never shows its message. */
function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof HTTPException) {
    switch (error.status) {
      case 400:
        return new ApiError("invalid_json", `The body is not valid JSON: ${error.message}`);
      case 413:
        return new ApiError("payload_too_large", "The body is larger than 1 MB.");
      case 415:
        return new ApiError(
          "unsupported_media_type",
          "Send the body as JSON with `Content-Type: application/json`.",
        );
      case 401:
        return new ApiError("unauthorized", error.message);
      case 404:
        return new ApiError("not_found", error.message);
    }
  }
  return new ApiError(
    "internal_error",
    "taskrelay failed to handle this request; the request id finds it in the logs.",
  );
}

export type App = ReturnType<typeof createApp>;
