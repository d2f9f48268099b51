// Live progress of one run: Parallel's run events relayed as taskrelay events, ending with the run as
// taskrelay stores it. Transport-agnostic: an async generator that a route turns into SSE.
//
// Parallel's event stream of a run closes after about 570 s and cannot be resumed: every connection
// starts over with the run's state, the whole reasoning trace so far and the latest stats. So while
// the run is active the relay connects again, and drops what it has already sent (messages by type,
// timestamp and text; stats unless they changed). D1 stays the source of truth for the run's state:
// it is re-read whenever Parallel reports a state, between connections, and while the run waits for
// its Parallel id (`submitting`) or for taskrelay to store the result Parallel reported.
//
// Watching a run is also how taskrelay learns that Parallel started it: webhooks report only the
// end, and the poller stays quiet while a run is on time, so a `queued` run that Parallel's stream
// reports `running` is recorded as running (the run's page and GET /v1/runs/:id then say so).
import { stepGuard } from "../db/run-states";
import { changeRun, findRun, isTerminal, type Run } from "../db/runs";
import { describeError } from "../log";
import type { TaskRunEventsResponse } from "../parallel/client";
import type { RunView } from "../schemas/runs";
import type { ServiceContext } from "./context";
import { toRunView } from "./run-view";

export const PROGRESS_MESSAGE_TYPES = [
  "task_run.progress_msg.plan",
  "task_run.progress_msg.search",
  "task_run.progress_msg.result",
  "task_run.progress_msg.tool_call",
  "task_run.progress_msg.exec_status",
] as const;
export type ProgressMessageType = (typeof PROGRESS_MESSAGE_TYPES)[number];

export interface ProgressStats {
  type: "task_run.progress_stats";
  progress_meter: number;
  source_stats: {
    num_sources_considered: number | null;
    num_sources_read: number | null;
    sources_read_sample: string[] | null;
  };
}

export interface ProgressMessage {
  type: ProgressMessageType;
  message: string;
  timestamp: string | null;
}

export type ProgressEvent =
  /** The run as taskrelay shows it: first, and again whenever its status changes. */
  | { event: "run"; data: RunView }
  | { event: "task_run.progress_stats"; data: ProgressStats }
  | { event: ProgressMessageType; data: ProgressMessage }
  /** The run is finished (and, when completed, its result stored): the last event. */
  | { event: "end"; data: RunView };

export interface ProgressRuntime {
  /** Resolves after `ms`, or at once when `signal` aborts. */
  sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  /** How often D1 is re-read while there is nothing to relay. */
  pollMs: number;
  /** The least time between two connections to Parallel's stream. */
  reconnectMs: number;
  /** Upper bound of the back-off after a failed connection. */
  maxBackoffMs: number;
  /** How long one client connection is served; then it ends without `end` and the client reconnects. */
  maxStreamMs: number;
  /**
   * Connections to Parallel per client connection (each is a subrequest of this invocation, and
   * Workers limit those); past it the client connection ends without `end`, as when its time is up.
   */
  maxUpstreamConnections: number;
  /** Comment lines are sent this often, so idle proxies keep the connection open. */
  keepAliveMs: number;
}

const SECOND = 1000;
/**
 * The most calls one turn of the loop below makes: a connection to Parallel, a D1 read on each of its
 * state events (the first and the last) and one after it, and recording `running`.
 */
const CALLS_PER_LOOP = 5;

/** The waits scale with TIME_SCALE (as every wait of the relay), with floors that keep them sane. */
export function progressRuntime(timeScale: number): ProgressRuntime {
  const scaled = (ms: number, floor: number) => Math.max(floor, Math.round(ms * timeScale));
  return {
    sleep: abortableSleep,
    pollMs: scaled(SECOND, 100),
    reconnectMs: scaled(SECOND, 100),
    maxBackoffMs: scaled(30 * SECOND, 1000),
    maxStreamMs: scaled(30 * 60 * SECOND, 10 * SECOND),
    maxUpstreamConnections: 40,
    keepAliveMs: scaled(15 * SECOND, 250),
  };
}

export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** Finished for the client: terminal, and a completed run's result is stored (so `end` can say so). */
export function progressFinished(run: Run): boolean {
  return isTerminal(run.status) && (run.status !== "completed" || run.result_stored_at !== null);
}

/**
 * The events of a run the caller may see (already loaded, owner checked). Ends with `end` once the
 * run is finished; returns without it when `signal` aborts or the connection's time is up.
 */
export async function* followRunProgress(
  ctx: ServiceContext,
  start: Run,
  signal: AbortSignal,
  runtime: ProgressRuntime,
): AsyncGenerator<ProgressEvent> {
  const log = ctx.log.child({ run_id: start.id });
  const deadline = Date.now() + runtime.maxStreamMs;
  const sentMessages = new Set<string>();
  let lastStats: string | null = null;
  let run = start;
  let parallelSaysFinished = false;
  let failures = 0;
  let connections = 0;

  yield { event: "run", data: toRunView(run) };

  /** Re-reads the run; yields `run` when its status changed. */
  async function* refresh(): AsyncGenerator<ProgressEvent> {
    const fresh = await findRun(ctx.db, run.id);
    if (!fresh) return;
    const changed = fresh.status !== run.status;
    run = fresh;
    if (changed) yield { event: "run", data: toRunView(run) };
  }

  while (!signal.aborted) {
    if (progressFinished(run)) {
      log.info("progress.ended", { status: run.status, connections });
      yield { event: "end", data: toRunView(run) };
      return;
    }
    // Out of time, or of this invocation's calls: end without `end`, and the client's reconnection
    // starts a fresh invocation.
    const calls = ctx.usage.d1_queries + connections;
    if (
      Date.now() >= deadline ||
      connections >= runtime.maxUpstreamConnections ||
      calls + CALLS_PER_LOOP > ctx.config.SUBREQUEST_BUDGET
    ) {
      log.info("progress.time_up", { status: run.status, connections, calls });
      return;
    }

    const parallelId = run.parallel_run_id;
    if (!parallelId || parallelSaysFinished || isTerminal(run.status)) {
      // Nothing to relay: not at Parallel yet, or finished there and taskrelay is storing the result.
      await runtime.sleep(runtime.pollMs, signal);
      yield* refresh();
      continue;
    }

    connections++;
    const connectedAt = Date.now();
    // One connection's own signal: the client going away or the connection's time running out ends it.
    const upstream = new AbortController();
    const stopUpstream = () => upstream.abort();
    signal.addEventListener("abort", stopUpstream, { once: true });
    const timer = setTimeout(stopUpstream, Math.max(0, deadline - Date.now()));
    try {
      yield* relayConnection(parallelId, upstream.signal);
    } finally {
      clearTimeout(timer);
      signal.removeEventListener("abort", stopUpstream);
    }
    if (signal.aborted) return;
    yield* refresh();
    // Parallel closed the stream (its ~570 s window) while the run goes on: connect again, not in a
    // loop; after failures, back off.
    const pause =
      failures > 0
        ? Math.min(runtime.maxBackoffMs, runtime.reconnectMs * 2 ** failures)
        : runtime.reconnectMs - (Date.now() - connectedAt);
    const wait = Math.min(pause, deadline - Date.now());
    if (!parallelSaysFinished && wait > 0) await runtime.sleep(wait, signal);
  }

  /** Queued → running, only from queued: a status recorded meanwhile (say, completed) stays. */
  async function recordRunning(queued: Run): Promise<void> {
    const detail = { source: "progress", from: "queued", to: "running" };
    const at = ctx.now().toISOString();
    const changed = await changeRun(
      ctx.db,
      queued,
      at,
      { status: "running" },
      { kind: "status_changed", detail },
      stepGuard("progress_started"),
    );
    if (changed) log.info("run.status", detail);
  }

  /** One connection to Parallel's stream, relayed until it closes, fails or the run is finished. */
  async function* relayConnection(
    parallelId: string,
    upstreamSignal: AbortSignal,
  ): AsyncGenerator<ProgressEvent> {
    const outcome = await ctx.parallel.streamEvents(parallelId, upstreamSignal);
    if (!outcome.ok) {
      if (upstreamSignal.aborted) return;
      failures++;
      log.warn("progress.upstream_failed", { kind: outcome.kind, parallel_status: outcome.status, failures });
      // 404 or a refusal will not get better: follow the run in D1 alone.
      if (outcome.kind !== "transient") parallelSaysFinished = true;
      return;
    }

    try {
      for await (const event of outcome.value) {
        if (upstreamSignal.aborted) return;
        const relayed = relayable(event);
        // Progress is what proves a connection healthy (every connection starts with a state event).
        if (relayed) failures = 0;
        if (relayed?.event === "task_run.progress_stats") {
          const key = JSON.stringify([relayed.data.progress_meter, relayed.data.source_stats]);
          if (key === lastStats) continue;
          lastStats = key;
          yield relayed;
        } else if (relayed) {
          const key = `${relayed.data.type}|${relayed.data.timestamp}|${relayed.data.message}`;
          if (sentMessages.has(key)) continue;
          sentMessages.add(key);
          yield relayed;
        } else if (event.type === "task_run.state") {
          if (!event.run.is_active) parallelSaysFinished = true;
          if (event.run.status === "running" && run.status === "queued") await recordRunning(run);
          yield* refresh();
          if (progressFinished(run)) break;
        } else if (event.type === "error") {
          failures++;
          log.warn("progress.upstream_error", { message: event.error.message, failures });
          break;
        }
      }
    } catch (error) {
      if (upstreamSignal.aborted) return;
      failures++;
      log.warn("progress.upstream_broken", { error: describeError(error), failures });
    }
  }
}

function relayable(
  event: TaskRunEventsResponse,
): Extract<ProgressEvent, { event: "task_run.progress_stats" | ProgressMessageType }> | null {
  if (event.type === "task_run.progress_stats") {
    return {
      event: event.type,
      data: {
        type: event.type,
        progress_meter: event.progress_meter,
        source_stats: {
          num_sources_considered: event.source_stats?.num_sources_considered ?? null,
          num_sources_read: event.source_stats?.num_sources_read ?? null,
          sources_read_sample: event.source_stats?.sources_read_sample ?? null,
        },
      },
    };
  }
  if ((PROGRESS_MESSAGE_TYPES as readonly string[]).includes(event.type)) {
    const message = event as { type: ProgressMessageType; message: string; timestamp?: string | null };
    return {
      event: message.type,
      data: { type: message.type, message: message.message, timestamp: message.timestamp ?? null },
    };
  }
  return null;
}
