// Shared by the workerd tests: call the Worker through its real fetch handler, mint a fresh tenant
// per test, and stand in for Parallel at the HTTP boundary with MSW, recording every call.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { Webhook } from "standardwebhooks";
import { expect } from "vitest";
import type { Env } from "../../src/env";
import worker from "../../src/index";
import { network } from "./setup";

export const RELAY = "https://relay.test";
export const PARALLEL = "https://parallel.test";
export const ADMIN = { authorization: "Bearer test-admin-token" };

export function api(path: string, init: RequestInit = {}): Promise<Response> {
  return exports.default.fetch(`${RELAY}${path}`, init);
}

export function postJson(
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return api(path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
}

/** Reads a JSON body, failing with the body in the message if the status is not the expected one. */
export async function expectJson<T = Record<string, unknown>>(
  response: Response,
  status: number,
): Promise<T> {
  const text = await response.text();
  expect(response.status, `expected ${status}, got ${response.status}: ${text}`).toBe(status);
  return JSON.parse(text) as T;
}

export interface Tenant {
  id: string;
  key: string;
  signingSecret: string;
  auth: { authorization: string };
}

export async function createTenant(name = "tenant"): Promise<Tenant> {
  const created = await expectJson<{ id: string; key: string; signing_secret: string }>(
    await postJson("/v1/keys", { name }, ADMIN),
    201,
  );
  return {
    id: created.id,
    key: created.key,
    signingSecret: created.signing_secret,
    auth: { authorization: `Bearer ${created.key}` },
  };
}

export interface RecordedCall {
  method: string;
  path: string;
  headers: Headers;
  body: unknown;
}

export interface TaskRunShape {
  run_id: string;
  interaction_id: string;
  status: string;
  is_active: boolean;
  processor: string;
  metadata: Record<string, unknown> | null;
  created_at: string;
  modified_at: string;
  warnings?: unknown[] | null;
  error?: unknown;
}

export function taskRun(overrides: Partial<TaskRunShape> = {}): TaskRunShape {
  const id = overrides.run_id ?? `trun_${crypto.randomUUID().replaceAll("-", "")}`;
  const now = new Date().toISOString();
  return {
    run_id: id,
    interaction_id: id,
    status: "queued",
    is_active: true,
    processor: "base",
    metadata: null,
    created_at: now,
    modified_at: now,
    warnings: null,
    ...overrides,
  };
}

export function parallelError(status: number, message: string, headers: Record<string, string> = {}) {
  return HttpResponse.json(
    { type: "error", error: { ref_id: crypto.randomUUID(), message, detail: null } },
    { status, headers },
  );
}

type Reply = (call: RecordedCall) => Response | Promise<Response>;

/**
 * A stand-in for Parallel's Task API. By default a create answers 202 with a queued run that echoes
 * the processor and metadata; pass `create` to answer otherwise. Every call is recorded.
 */
export function fakeParallel(replies: { create?: Reply; retrieve?: Reply; result?: Reply } = {}) {
  const calls: RecordedCall[] = [];
  const record = async (
    request: { method: string; headers: Headers; text(): Promise<string> },
    path: string,
  ): Promise<RecordedCall> => {
    const text = request.method === "GET" ? "" : await request.text();
    const call = {
      method: request.method,
      path,
      headers: request.headers,
      body: text ? JSON.parse(text) : null,
    };
    calls.push(call);
    return call;
  };
  network.use(
    http.post(`${PARALLEL}/v1/tasks/runs`, async ({ request }) => {
      const call = await record(request, "/v1/tasks/runs");
      if (replies.create) return replies.create(call);
      const body = call.body as { processor: string; metadata: Record<string, unknown> };
      return HttpResponse.json(taskRun({ processor: body.processor, metadata: body.metadata }), {
        status: 202,
      });
    }),
    http.get(`${PARALLEL}/v1/tasks/runs/:id/result`, async ({ request, params }) => {
      const call = await record(request, `/v1/tasks/runs/${params.id}/result`);
      return replies.result ? replies.result(call) : parallelError(404, "Run failed or run id not found");
    }),
    http.get(`${PARALLEL}/v1/tasks/runs/:id`, async ({ request, params }) => {
      const call = await record(request, `/v1/tasks/runs/${params.id}`);
      return replies.retrieve ? replies.retrieve(call) : parallelError(404, "Run id not found");
    }),
  );
  return {
    calls,
    creates: () => calls.filter((c) => c.method === "POST" && c.path === "/v1/tasks/runs"),
  };
}

export const TEXT_RUN = { processor: "base", input: "What was the GDP of France in 2023?" };

/**
 * Signs a webhook as Parallel documents it, with the standardwebhooks library (independent of the
 * relay's code): `raw` uses the secret string's bytes as the key (Parallel's documented scheme),
 * `whsec` the base64-decoded key of a `whsec_` secret.
 */
export function signWebhook(
  body: string,
  options: { secret?: string; mode?: "raw" | "whsec"; id?: string; timestamp?: number } = {},
): Record<string, string> {
  const id = options.id ?? `whevent_${crypto.randomUUID().replaceAll("-", "")}`;
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000);
  const secret = options.secret ?? "test-webhook-secret";
  const signer = options.mode === "whsec" ? new Webhook(secret) : new Webhook(secret, { format: "raw" });
  return {
    "content-type": "application/json",
    "webhook-id": id,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": signer.sign(id, new Date(timestamp * 1000), body),
  };
}

export function webhookBody(run: Partial<TaskRunShape> & { run_id: string; status: string }): string {
  const data = taskRun({ ...run, is_active: false });
  return JSON.stringify({ timestamp: new Date().toISOString(), type: "task_run.status", data });
}

export const JSON_OUTPUT = {
  type: "json",
  content: { gdp: "$3.1 trillion (2023)" },
  basis: [
    {
      field: "gdp",
      citations: [
        { url: "https://www.imf.org/en/Publications", title: "IMF", excerpts: ["France GDP 3.1tn"] },
      ],
      reasoning: "IMF figures for 2023.",
      confidence: "high",
    },
  ],
};

/** A /result reply for a completed run. */
export function resultReply(runId: string, output: unknown = JSON_OUTPUT) {
  return HttpResponse.json({
    run: taskRun({ run_id: runId, status: "completed", is_active: false }),
    output,
  });
}

/**
 * Empties every table background work reads (D1 is shared by a file's tests, and a tick sees every
 * due row), so a test of the sweeper, the queue or the tick budget starts with nothing due.
 */
export async function emptyBackgroundWork(): Promise<void> {
  await env.DB.batch(
    [
      "delivery_attempts",
      "deliveries",
      "run_events",
      "webhook_events",
      "schedule_occurrences",
      "runs",
      "batches",
      "schedules",
      "operator_alerts",
      "dead_letters",
      "batches",
    ].map((table) => env.DB.prepare(`DELETE FROM ${table}`)),
  );
}

/**
 * Parallel's completion webhook for `parallelRunId`, signed, through the Worker's fetch handler with
 * `bindings` (the test env unless given); the relay must answer 200. Its background work (the result
 * fetch, the first delivery) is awaited unless `background: "left_running"` (an invocation that never
 * finishes it).
 */
export async function completionWebhook(
  parallelRunId: string,
  options: { bindings?: Env; background?: "awaited" | "left_running" } = {},
): Promise<void> {
  const body = webhookBody({ run_id: parallelRunId, status: "completed" });
  const execution = createExecutionContext();
  const response = await worker.fetch(
    new Request(`${RELAY}/webhooks/parallel`, { method: "POST", headers: signWebhook(body), body }),
    options.bindings ?? env,
    execution,
  );
  expect(response.status).toBe(200);
  if (options.background !== "left_running") await waitOnExecutionContext(execution);
}
