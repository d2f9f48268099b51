// GET /v1/tasks/runs/{id}/events (reference §2.5). Each connection starts with task_run.state,
// replays the reasoning trace so far and the latest progress_stats, follows the run live, and
// ends with a task_run.state carrying the output. A stream closes after 570 s of Parallel's time
// (time-scaled).
//
// A run's progress is a plan computed from its seed and timings, not stored: only runs someone
// is listening to cost timers.

import { unitDraw } from "./faults.ts";
import type { RunRecord, RunStore } from "./runs.ts";
import { isTerminal, toTaskRun } from "./runs.ts";
import { liveStreamResponse } from "./sse.ts";
import { isoFromMs, nowMs } from "./time.ts";
import type { TaskOutput, TaskRun } from "./types.ts";

export const SSE_MAX_STREAM_MS = 570_000;
export const SSE_KEEPALIVE_MS = 15_000;

type ProgressMessageType =
  | "task_run.progress_msg.plan"
  | "task_run.progress_msg.search"
  | "task_run.progress_msg.result"
  | "task_run.progress_msg.tool_call"
  | "task_run.progress_msg.exec_status";

export interface ProgressMessageEvent {
  type: ProgressMessageType;
  message: string;
  timestamp: string | null;
}

export interface ProgressStatsEvent {
  type: "task_run.progress_stats";
  source_stats: {
    num_sources_considered: number | null;
    num_sources_read: number | null;
    sources_read_sample: string[] | null;
  };
  progress_meter: number;
}

export interface StateEvent {
  type: "task_run.state";
  event_id: null;
  run: TaskRun;
  input: null;
  output: TaskOutput | null;
}

interface PlannedEvent {
  /** ms after the run's creation. */
  atMs: number;
  event: ProgressMessageEvent | ProgressStatsEvent;
}

function subject(run: RunRecord): string {
  const input = run.input.input;
  const text = typeof input === "string" ? input : JSON.stringify(input);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function stats(run: RunRecord, seed: number, meter: number): ProgressStatsEvent {
  const total = 40 + Math.floor(unitDraw(seed, "sources", run.seq) * 260);
  const considered = Math.round((total * meter) / 100);
  const read = Math.round(considered / 8);
  return {
    type: "task_run.progress_stats",
    source_stats: {
      num_sources_considered: considered,
      num_sources_read: read,
      sources_read_sample: Array.from(
        { length: Math.min(read, 3) },
        (_, i) => `https://en.wikipedia.org/wiki/Simulated_source_${run.seq}_${i + 1}`,
      ),
    },
    progress_meter: meter,
  };
}

/** The run's events in time order; fewer when events are not enabled (below pro by default). */
export function progressPlan(run: RunRecord, seed: number): PlannedEvent[] {
  const start = run.runningAfterMs;
  const span = Math.max(0, run.durationMs - run.runningAfterMs);
  const at = (share: number): number => start + span * share;
  const message = (share: number, type: ProgressMessageType, text: string): PlannedEvent => ({
    atMs: at(share),
    event: { type, message: text, timestamp: isoFromMs(run.createdAtMs + at(share)) },
  });
  const meter = (share: number, value: number): PlannedEvent => ({
    atMs: at(share),
    event: stats(run, seed, value),
  });
  const topic = subject(run);
  if (!run.eventsEnabled) {
    return [message(0, "task_run.progress_msg.exec_status", "Starting research"), meter(0.5, 50)];
  }
  const plan: PlannedEvent[] = [
    message(0, "task_run.progress_msg.exec_status", "Starting research"),
    message(0.05, "task_run.progress_msg.plan", `Planning research on ${topic}`),
    meter(0.1, 10),
    message(0.2, "task_run.progress_msg.search", `Searching the web for ${topic}`),
    meter(0.35, 35),
    message(0.45, "task_run.progress_msg.search", `Searching for corroborating sources on ${topic}`),
    message(0.55, "task_run.progress_msg.result", "Reading the most relevant sources"),
    meter(0.65, 65),
    message(0.8, "task_run.progress_msg.result", "Cross-checking findings across sources"),
    message(0.9, "task_run.progress_msg.exec_status", "Compiling the output"),
    meter(0.92, 90),
  ];
  const server = run.input.mcp_servers?.[0];
  if (server) {
    const tool = server.allowed_tools?.[0] ?? "search";
    plan.push(
      message(0.6, "task_run.progress_msg.tool_call", `Calling ${tool} on MCP server ${server.name}`),
    );
    plan.sort((a, b) => a.atMs - b.atMs);
  }
  return plan;
}

export interface EventStreamOptions {
  runs: RunStore;
  seed: number;
  timeScale: number;
  /** Aborted when the client goes away. */
  signal: AbortSignal;
  /** Open streams register their close function here so the server can end them on shutdown. */
  openStreams: Set<() => void>;
}

export function eventStreamResponse(run: RunRecord, options: EventStreamOptions): Response {
  const { runs, seed } = options;
  const live = {
    signal: options.signal,
    openStreams: options.openStreams,
    keepaliveMs: SSE_KEEPALIVE_MS * options.timeScale,
    lifetimeMs: SSE_MAX_STREAM_MS * options.timeScale,
  };
  return liveStreamResponse(live, (channel) => {
    const state = (output: TaskOutput | null): StateEvent => ({
      type: "task_run.state",
      event_id: null,
      run: toTaskRun(run),
      input: null,
      output,
    });
    const finish = (): void => {
      if (run.status === "completed") {
        channel.send(stats(run, seed, 100));
        channel.send(state(runs.outputFor(run, run.elementBasis)));
      } else {
        channel.send(state(null));
      }
      channel.close();
    };

    channel.send(state(null));
    const plan = progressPlan(run, seed);
    const elapsed = (run.completedAtMs ?? nowMs()) - run.createdAtMs;
    const past = plan.filter((p) => p.atMs <= elapsed);
    for (const planned of past) {
      if (planned.event.type !== "task_run.progress_stats") channel.send(planned.event);
    }
    if (isTerminal(run.status)) {
      finish();
      return;
    }
    const latestStats = past.findLast((p) => p.event.type === "task_run.progress_stats");
    if (latestStats) channel.send(latestStats.event);

    for (const planned of plan.filter((p) => p.atMs > elapsed)) {
      channel.after(planned.atMs - elapsed, () => channel.send(planned.event));
    }
    let lastStatus = run.status;
    channel.onClose(
      runs.subscribe(run, () => {
        if (isTerminal(run.status)) finish();
        else if (run.status !== lastStatus) {
          lastStatus = run.status;
          channel.send(state(null));
        }
      }),
    );
  });
}
