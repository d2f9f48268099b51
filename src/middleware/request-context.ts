// Per request: an id (echoed as `x-request-id` and in every error), a logger that carries it, the
// service context, and one wide log line with the outcome, latency, D1 cost and the steps taken,
// the work done after the response included.
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../app-env";
import { readConfig } from "../env";
import { newId } from "../ids";
import { createGatheringLogger } from "../log";
import { createServiceContext } from "../services/context";

export function requestContext() {
  return createMiddleware<AppEnv>(async function requestContext(c, next) {
    const started = Date.now();
    const requestId = newId("req");
    c.set("requestId", requestId);
    c.header("x-request-id", requestId);
    // Configuration errors surface from here through onError, with the request id.
    const log = createGatheringLogger({ request_id: requestId }, readConfig(c.env).LOG_LEVEL);
    const services = createServiceContext(c.env, c.executionCtx, { log });
    c.set("services", services);
    await next();
    // One line per request, written once the work it left for after the response (result fetch,
    // delivery) has settled too: latency_ms is the response's, background_ms the whole request's.
    const fields = {
      method: c.req.method,
      path: c.req.routePath,
      status: c.res.status,
      latency_ms: Date.now() - started,
    };
    c.executionCtx.waitUntil(
      services.settled().then(() => {
        log.flush("http.request", { ...fields, background_ms: Date.now() - started, ...services.usage });
        log.close();
      }),
    );
  });
}
