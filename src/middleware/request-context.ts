// Per request: an id (echoed as `x-request-id` and in every error), a logger that carries it, the
// service context, and one access log line with outcome and latency.
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../app-env";
import { newId } from "../ids";
import { createLogger } from "../log";
import { createServiceContext } from "../services/context";

export function requestContext() {
  return createMiddleware<AppEnv>(async function requestContext(c, next) {
    const started = Date.now();
    const requestId = newId("req");
    const log = createLogger({ request_id: requestId });
    c.set("requestId", requestId);
    c.header("x-request-id", requestId);
    // Configuration errors surface from here through onError, with the request id.
    c.set("services", createServiceContext(c.env, c.executionCtx, { log }));
    await next();
    log.info("http.request", {
      method: c.req.method,
      path: c.req.routePath,
      status: c.res.status,
      latency_ms: Date.now() - started,
    });
  });
}
