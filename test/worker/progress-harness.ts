// For the progress tests: Parallel's run events at the HTTP boundary (MSW answering with an SSE body
// built step by step), runs put into a given state straight in D1, and a reader of taskrelay's stream.
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { expect } from "vitest";
import { type Run, updateRunReturning } from "../../src/db/runs";
import worker from "../../src/index";
import { JSON_OUTPUT, PARALLEL, RELAY, taskRun } from "./harness";
import { network } from "./setup";

/** A step of a fake event stream: an event or comment to send, or work to do before the next one. */
export type StreamStep = { type: string; [field: string]: unknown } | { comment: string } | (() => unknown);

export const state = (runId: string, status: string) => ({
  type: "task_run.state",
  event_id: null,
  input: null,
  output: null,
  run: taskRun({ run_id: runId, status, is_active: !["completed", "failed", "cancelled"].includes(status) }),
});

export const message = (kind: string, text: string, timestamp = "2026-11-28T10:31:02.114Z") => ({
  type: `task_run.progress_msg.${kind}`,
  message: text,
  timestamp,
});

export const stats = (meter: number, considered = meter * 3) => ({
  type: "task_run.progress_stats",
  progress_meter: meter,
  source_stats: {
    num_sources_considered: considered,
    num_sources_read: Math.round(considered / 8),
    sources_read_sample: ["https://en.wikipedia.org/wiki/Example"],
  },
});

/** An SSE body that sends the steps in order; `open: true` keeps it open until the request aborts. */
function eventStream(steps: StreamStep[], signal: AbortSignal, open: boolean): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let index = 0;
  return new ReadableStream({
    async pull(controller) {
      while (index < steps.length) {
        const step = steps[index++] as StreamStep;
        if (typeof step === "function") {
          await step();
          continue;
        }
        const text =
          "comment" in step
            ? `: ${step.comment}\n\n`
            : `event: ${step.type}\ndata: ${JSON.stringify(step)}\n\n`;
        controller.enqueue(encoder.encode(text));
        return;
      }
      if (!open) return controller.close();
      await new Promise<void>((resolve) => {
        if (signal.aborted) resolve();
        signal.addEventListener("abort", () => resolve(), { once: true });
      });
      controller.close();
    },
  });
}

export interface EventsCall {
  parallelRunId: string;
  signal: AbortSignal;
}

/**
 * Parallel's `GET /v1/tasks/runs/{id}/events`: the n-th connection gets the n-th reply (the last one
 * repeats). A reply is a list of steps (an SSE body), `{ open: steps }` (a body that stays open after
 * them), or a Response (e.g. an error).
 */
export function fakeEvents(replies: Array<StreamStep[] | { open: StreamStep[] } | (() => Response)>) {
  const calls: EventsCall[] = [];
  network.use(
    http.get(`${PARALLEL}/v1/tasks/runs/:id/events`, ({ request, params }) => {
      calls.push({ parallelRunId: String(params.id), signal: request.signal });
      const reply = replies[Math.min(calls.length, replies.length) - 1];
      if (typeof reply === "function") return reply();
      const steps = Array.isArray(reply) ? reply : (reply?.open ?? []);
      return new HttpResponse(eventStream(steps, request.signal, !Array.isArray(reply)), {
        headers: { "content-type": "text/event-stream" },
      });
    }),
  );
  return { calls };
}

/** Moves a stored run to a state as the pipeline would (completed: output and result stored). */
export async function setRunState(
  runId: string,
  status: Run["status"],
  extra: { parallel_run_id?: string } = {},
): Promise<Run> {
  const at = new Date().toISOString();
  const terminal = ["completed", "failed", "cancelled", "rejected", "expired"].includes(status);
  const run = await updateRunReturning(env.DB, runId, at, {
    status,
    ...(extra.parallel_run_id ? { parallel_run_id: extra.parallel_run_id, submitted_at: at } : {}),
    ...(terminal ? { finished_at: at, next_sweep_at: null } : {}),
    ...(status === "completed" ? { output: JSON_OUTPUT, result_stored_at: at } : {}),
    ...(status === "failed" ? { error: { code: "parallel_failed", message: "Task execution failed" } } : {}),
  });
  expect(run, `run ${runId}`).not.toBeNull();
  return run as Run;
}

export interface SseEvent {
  event: string | null;
  data: string;
  retry?: number;
}

export interface SseReading {
  events: SseEvent[];
  comments: string[];
  raw: string;
}

export function parseSse(raw: string): SseReading {
  const events: SseEvent[] = [];
  const comments: string[] = [];
  for (const block of raw.split("\n\n")) {
    if (!block.trim()) continue;
    let event: string | null = null;
    const data: string[] = [];
    let retry: number | undefined;
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) comments.push(line.slice(1).trim());
      else if (line.startsWith("event: ")) event = line.slice(7);
      else if (line.startsWith("data: ")) data.push(line.slice(6));
      else if (line.startsWith("retry: ")) retry = Number(line.slice(7));
    }
    if (event !== null || data.length > 0) {
      events.push({ event, data: data.join("\n"), ...(retry !== undefined ? { retry } : {}) });
    }
  }
  return { events, comments, raw };
}

/**
 * GET through the Worker's fetch handler with settings of our own (POLL_TIME_SCALE makes the relay's
 * waits short), reading the stream to its end or until `until` holds; then the client goes away.
 */
export async function readProgress(
  path: string,
  headers: Record<string, string>,
  options: { settings?: Record<string, string>; until?: (reading: SseReading) => boolean } = {},
): Promise<{ response: Response; reading: SseReading }> {
  const response = await worker.fetch(
    new Request(`${RELAY}${path}`, { headers }),
    { ...env, POLL_TIME_SCALE: "0.05", ...options.settings },
    createExecutionContext(),
  );
  if (!response.body || !response.headers.get("content-type")?.startsWith("text/event-stream")) {
    return { response, reading: parseSse("") };
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let raw = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    raw += decoder.decode(value, { stream: true });
    if (options.until?.(parseSse(raw))) {
      await reader.cancel();
      break;
    }
  }
  return { response, reading: parseSse(raw) };
}

export const eventNames = (reading: SseReading) => reading.events.map((e) => e.event);
export const eventData = <T = Record<string, unknown>>(event: SseEvent | undefined): T =>
  JSON.parse(event?.data ?? "null") as T;
