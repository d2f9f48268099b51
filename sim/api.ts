// Parallel's Task API v1 surface: create, retrieve, input, blocking result, events (§2).

import { Hono, type MiddlewareHandler } from "hono";
import type { SimContext } from "./context.ts";
import {
  CREATE_RUN,
  type EndpointKey,
  RETRIEVE_RUN,
  RUN_EVENTS,
  RUN_INPUT,
  RUN_RESULT,
} from "./endpoints.ts";
import { errorResponse, jsonResponse, MESSAGES } from "./errors.ts";
import { eventStreamResponse } from "./events.ts";
import { isTerminal, type RunRecord, toTaskRun } from "./runs.ts";
import { sleep } from "./time.ts";
import { checkCreateRequest, FIELD_BASIS_BETA, parseBetas } from "./validation.ts";

const DEFAULT_RESULT_TIMEOUT_S = 600;
/** setTimeout's ceiling (~24.8 days); longer /result timeouts wait this long. */
const MAX_TIMER_MS = 2_147_483_647;

const FAULT_MESSAGES: Record<500 | 502 | 503, string> = {
  500: MESSAGES.internal,
  502: MESSAGES.badGateway,
  503: MESSAGES.unavailable,
};

/** Counts the call, then applies latency, auth and injected faults before the handler runs. */
export function endpoint(sim: SimContext, key: EndpointKey): MiddlewareHandler {
  return async function simulateEndpoint(c, next) {
    const index = sim.stats.call(key);
    // Group endpoints name the group as {id}; the run, if any, is {run_id}.
    const runId = c.req.param("run_id") ?? c.req.param("id");
    const run = runId === undefined ? undefined : sim.runs.get(runId);
    if (run) run.calls[key] = (run.calls[key] ?? 0) + 1;

    const latency = sim.faults.latencyMs(key, index);
    if (latency > 0) await sleep(latency, c.req.raw.signal);

    const refusal = refuse(sim, key, index, c.req.header("x-api-key"));
    if (refusal) {
      sim.stats.status(key, refusal.status);
      return refusal;
    }
    await next();
    sim.stats.status(key, c.res.status);
  };
}

function refuse(
  sim: SimContext,
  key: EndpointKey,
  index: number,
  apiKey: string | undefined,
): Response | null {
  if (apiKey !== sim.config().api_key) return errorResponse(401, MESSAGES.unauthorized);
  const fault = sim.faults.apiFault(key, index);
  if (fault?.kind === "error") {
    sim.stats.injectedErrors++;
    return errorResponse(fault.status, FAULT_MESSAGES[fault.status], { fault: "error_rate" });
  }
  if (fault?.kind === "throttle") {
    sim.stats.injectedThrottles++;
    return errorResponse(429, MESSAGES.tooManyRequests, { fault: "throttle_rate" }, { "retry-after": "1" });
  }
  return null;
}

/** One slot of the create rate limit (a create, or an add-runs call whatever its size); a 429 if none. */
export function takeCreateSlot(sim: SimContext): Response | null {
  const config = sim.config();
  const decision = sim.limiter.take(Date.now(), config.rate_limit_per_minute);
  if (decision.allowed) return null;
  sim.stats.rateLimited++;
  return errorResponse(
    429,
    MESSAGES.tooManyRequests,
    { limit_per_minute: config.rate_limit_per_minute },
    { "retry-after": String(decision.retryAfterSeconds) },
  );
}

export function parallelApi(sim: SimContext): Hono {
  const app = new Hono();

  app.post("/v1/tasks/runs", endpoint(sim, CREATE_RUN), async (c) => {
    const limited = takeCreateSlot(sim);
    if (limited) return limited;
    let body: unknown;
    try {
      body = JSON.parse(await c.req.text());
    } catch {
      return errorResponse(422, MESSAGES.validation, {
        errors: [{ loc: ["body"], msg: "the body is not valid JSON", type: "json_invalid" }],
      });
    }
    const check = checkCreateRequest(body, c.req.header("parallel-beta"));
    if (!check.ok) {
      return check.status === 403
        ? errorResponse(403, MESSAGES.invalidProcessor, {
            processor: check.processor ?? null,
            errors: check.issues,
          })
        : errorResponse(422, MESSAGES.validation, { errors: check.issues });
    }
    const run = sim.runs.create(check.input, check.processor, {
      warnings: check.warnings,
      elementBasis: check.betas.has(FIELD_BASIS_BETA),
    });
    return jsonResponse(toTaskRun(run), 202);
  });

  app.get("/v1/tasks/runs/:id", endpoint(sim, RETRIEVE_RUN), (c) => {
    const run = sim.runs.get(c.req.param("id"));
    return run ? jsonResponse(toTaskRun(run), 200) : errorResponse(404, MESSAGES.runNotFound);
  });

  app.get("/v1/tasks/runs/:id/input", endpoint(sim, RUN_INPUT), (c) => {
    const run = sim.runs.get(c.req.param("id"));
    return run ? jsonResponse(run.input, 200) : errorResponse(404, MESSAGES.runNotFound);
  });

  app.get("/v1/tasks/runs/:id/result", endpoint(sim, RUN_RESULT), async (c) => {
    const raw = c.req.query("timeout");
    let timeoutSeconds = DEFAULT_RESULT_TIMEOUT_S;
    if (raw !== undefined) {
      // The OAS types timeout as an integer; like FastAPI, refuse anything else.
      if (!/^\d+$/.test(raw)) {
        return errorResponse(422, MESSAGES.validation, {
          errors: [{ loc: ["query", "timeout"], msg: "must be a non-negative integer", type: "int_parsing" }],
        });
      }
      timeoutSeconds = Number(raw);
    }
    const runId = c.req.param("id");
    const run = sim.runs.get(runId);
    if (!run) return errorResponse(404, MESSAGES.resultNotFound);
    if (!isTerminal(run.status)) await waitForEnd(sim, run, timeoutSeconds * 1000, c.req.raw.signal);

    const current = sim.runs.get(runId);
    if (!current || (isTerminal(current.status) && current.status !== "completed")) {
      return errorResponse(404, MESSAGES.resultNotFound);
    }
    if (current.status !== "completed") return errorResponse(408, MESSAGES.resultTimeout);
    const elementBasis =
      current.elementBasis || parseBetas(c.req.header("parallel-beta")).has(FIELD_BASIS_BETA);
    return jsonResponse({ run: toTaskRun(current), output: sim.runs.outputFor(current, elementBasis) }, 200);
  });

  app.get("/v1/tasks/runs/:id/events", endpoint(sim, RUN_EVENTS), (c) => {
    const run = sim.runs.get(c.req.param("id"));
    if (!run) return errorResponse(404, MESSAGES.runNotFound);
    const config = sim.config();
    return eventStreamResponse(run, {
      runs: sim.runs,
      seed: config.seed,
      timeScale: config.time_scale,
      signal: c.req.raw.signal,
      openStreams: sim.openStreams,
    });
  });

  return app;
}

/** Resolves when the run ends or is forgotten, the timeout passes, the client leaves, or the sim stops. */
function waitForEnd(sim: SimContext, run: RunRecord, timeoutMs: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      unsubscribe();
      signal.removeEventListener("abort", done);
      sim.waiters.delete(done);
      resolve();
    };
    const timer = setTimeout(done, Math.min(timeoutMs, MAX_TIMER_MS));
    const unsubscribe = sim.runs.subscribe(run, () => {
      if (isTerminal(run.status) || sim.runs.get(run.runId) !== run) done();
    });
    signal.addEventListener("abort", done, { once: true });
    sim.waiters.add(done);
  });
}
