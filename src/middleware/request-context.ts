// Per request: an id (echoed as `x-request-id` and in every error), a logger that carries it, the
// service context, and one wide log line with the outcome, latency, D1 cost and the steps taken —
// plus one for the work done after the response, if there was any.
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../app-env";
import { usageSince } from "../db/metered";
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
    const path = c.req.routePath;
    log.flush("http.request", {
      method: c.req.method,
      path,
      status: c.res.status,
      latency_ms: Date.now() - started,
      ...services.usage,
    });
    // Work finished after the response (result fetch, delivery) is logged with its own D1 cost.
    const atResponse = { ...services.usage };
    c.executionCtx.waitUntil(
      services.settled().then(() => {
        const background = usageSince(services.usage, atResponse);
        if (background.d1_queries > 0) {
          log.flush("http.background", {
            method: c.req.method,
            path,
            latency_ms: Date.now() - started,
            ...background,
          });
        }
        log.close();
      }),
    );
  });
}
