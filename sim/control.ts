// The simulator's own controls: inspect runs, webhooks and stats, end runs, change settings,
// reset. Served under /_sim without an API key (the sim is local-only) and offered in-process
// through SimControl for tests, the dev launcher and the benchmark.

import { Hono } from "hono";
import { z } from "zod";
import { applyConfigPatch, type SimConfig, SimConfigError, STARTUP_ONLY } from "./config.ts";
import type { SimContext } from "./context.ts";
import type { EndpointKey } from "./endpoints.ts";
import { errorResponse, jsonResponse } from "./errors.ts";
import { isTerminal, type RunRecord, type TerminalStatus, toTaskRun } from "./runs.ts";
import type { EndpointStats } from "./stats.ts";
import type { RunStatus, TaskRun } from "./types.ts";
import type { DeliveryAttempt, WebhookCounters } from "./webhooks.ts";

export interface SimRunView {
  run: TaskRun;
  /** Creation order since start or the last reset. */
  seq: number;
  webhook_url: string | null;
  /** Wall-clock ms from creation to the planned end. */
  planned_duration_ms: number;
  /** Whether fail_runs picked this run to fail. */
  fail_planned: boolean;
  events_enabled: boolean;
  created_at_ms: number;
  started_at_ms: number | null;
  /** When the run reached its terminal state. */
  completed_at: string | null;
  completed_at_ms: number | null;
  /** "control" when ended by POST /_sim/runs/{id}/finish. */
  finished_by: "schedule" | "control" | null;
  /** API calls that named this run, per endpoint. */
  calls: Partial<Record<EndpointKey, number>>;
}

export interface SimStats extends EndpointStats {
  started_at: string;
  runs: {
    created: number;
    queued: number;
    running: number;
    completed: number;
    failed: number;
    stored: number;
  };
  webhooks: WebhookCounters;
}

export class SimControlError extends Error {
  readonly status: 400 | 404 | 409;
  readonly detail: Record<string, unknown> | null;

  constructor(status: 400 | 404 | 409, message: string, detail: Record<string, unknown> | null = null) {
    super(message);
    this.name = "SimControlError";
    this.status = status;
    this.detail = detail;
  }
}

export interface RunFilter {
  status?: RunStatus;
  /** The most recent `limit` runs. */
  limit?: number;
}

export interface SimControl {
  config(): SimConfig;
  /** Applies settings (lower-case names, as POST /_sim/config). Throws SimConfigError. */
  updateConfig(patch: unknown): SimConfig;
  runs(filter?: RunFilter): SimRunView[];
  run(runId: string): SimRunView | undefined;
  /** Ends a run now. Throws SimControlError 404 (unknown) or 409 (already ended). */
  finishRun(runId: string, status?: TerminalStatus): SimRunView;
  webhooks(filter?: { runId?: string }): DeliveryAttempt[];
  stats(): SimStats;
  /** Forgets runs, webhook log and counters; cancels pending deliveries; restarts seeded sequences. */
  reset(): void;
}

function runView(run: RunRecord): SimRunView {
  return {
    run: toTaskRun(run),
    seq: run.seq,
    webhook_url: run.input.webhook?.url ?? null,
    planned_duration_ms: run.durationMs,
    fail_planned: run.failPlanned,
    events_enabled: run.eventsEnabled,
    created_at_ms: run.createdAtMs,
    started_at_ms: run.startedAtMs,
    completed_at: run.completedAtMs === null ? null : toTaskRun(run).modified_at,
    completed_at_ms: run.completedAtMs,
    finished_by: run.finishedBy,
    calls: { ...run.calls },
  };
}

export function createControl(sim: SimContext): SimControl {
  return {
    config: () => sim.config(),
    updateConfig(patch) {
      if (typeof patch === "object" && patch !== null) {
        const fixed = Object.keys(patch).filter((name) => STARTUP_ONLY.has(name as keyof SimConfig));
        if (fixed.length > 0)
          throw new SimConfigError(fixed.map((name) => `${name}: can only be set at startup`));
      }
      const next = applyConfigPatch(sim.config(), patch);
      sim.setConfig(next);
      return next;
    },
    runs(filter = {}) {
      let runs = sim.runs.list();
      if (filter.status !== undefined) runs = runs.filter((run) => run.status === filter.status);
      if (filter.limit !== undefined) runs = runs.slice(-filter.limit);
      return runs.map(runView);
    },
    run(runId) {
      const run = sim.runs.get(runId);
      return run ? runView(run) : undefined;
    },
    finishRun(runId, status = "completed") {
      const run = sim.runs.get(runId);
      if (!run) throw new SimControlError(404, "Run id not found", { run_id: runId });
      if (isTerminal(run.status)) {
        throw new SimControlError(409, `run already ended as ${run.status}`, {
          run_id: runId,
          status: run.status,
        });
      }
      sim.runs.finish(run, status, "control", "ended by POST /_sim/runs/{id}/finish");
      return runView(run);
    },
    webhooks: (filter) => sim.webhooks.attempts(filter),
    stats() {
      return {
        started_at: sim.startedAt,
        ...sim.stats.snapshot(),
        runs: sim.runs.counts(),
        webhooks: sim.webhooks.counters(),
      };
    },
    reset() {
      for (const close of [...sim.openStreams]) close();
      sim.runs.clear();
      sim.groups.clear();
      for (const release of [...sim.waiters]) release();
      sim.webhooks.reset();
      sim.stats.reset();
      sim.limiter.reset();
    },
  };
}

const finishBody = z.object({ status: z.enum(["completed", "failed"]).default("completed") }).strict();
const runsQuery = z.object({
  status: z
    .enum(["queued", "action_required", "running", "completed", "failed", "cancelling", "cancelled"])
    .optional(),
  limit: z.coerce.number().int().min(1).optional(),
});

async function readJson(request: Request): Promise<unknown> {
  const text = await request.text();
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new SimControlError(400, "the body is not valid JSON");
  }
}

function controlError(error: unknown): Response {
  if (error instanceof SimControlError) return errorResponse(error.status, error.message, error.detail);
  if (error instanceof SimConfigError) return errorResponse(400, error.message, { errors: error.issues });
  throw error;
}

/** Routes for /_sim/*, mounted at /_sim. */
export function controlApi(control: SimControl): Hono {
  const app = new Hono();

  app.get("/health", () => jsonResponse({ ok: true }, 200));

  app.get("/config", () => jsonResponse(control.config(), 200));

  app.post("/config", async (c) => {
    try {
      return jsonResponse(control.updateConfig(await readJson(c.req.raw)), 200);
    } catch (error) {
      return controlError(error);
    }
  });

  app.get("/runs", (c) => {
    const query = runsQuery.safeParse(c.req.query());
    if (!query.success) {
      return errorResponse(400, "invalid query", { errors: query.error.issues.map((i) => i.message) });
    }
    return jsonResponse({ runs: control.runs(query.data) }, 200);
  });

  app.get("/runs/:id", (c) => {
    const view = control.run(c.req.param("id"));
    return view ? jsonResponse(view, 200) : errorResponse(404, "Run id not found");
  });

  app.post("/runs/:id/finish", async (c) => {
    try {
      const body = finishBody.safeParse(await readJson(c.req.raw));
      if (!body.success) {
        throw new SimControlError(400, 'body must be {"status": "completed" | "failed"}', {
          errors: body.error.issues.map((i) => i.message),
        });
      }
      return jsonResponse(control.finishRun(c.req.param("id"), body.data.status), 200);
    } catch (error) {
      return controlError(error);
    }
  });

  app.get("/webhooks", (c) => {
    const runId = c.req.query("run_id");
    return jsonResponse({ attempts: control.webhooks(runId === undefined ? {} : { runId }) }, 200);
  });

  app.get("/stats", () => jsonResponse(control.stats(), 200));

  app.post("/reset", () => {
    control.reset();
    return jsonResponse({ ok: true }, 200);
  });

  return app;
}
