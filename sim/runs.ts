// The run store and each run's lifecycle: queued → running → completed | failed, on two timers
// per run (no polling loop). Durations come from the processor's latency range (§8) × time_scale.

import { randomBytes, randomUUID } from "node:crypto";
import type { Processor } from "../src/parallel/processors.ts";
import type { SimConfig } from "./config.ts";
import type { EndpointKey } from "./endpoints.ts";
import { MESSAGES } from "./errors.ts";
import type { Faults } from "./faults.ts";
import { generateOutput, isProOrAbove } from "./outputs.ts";
import { isoFromMs, nowMs, scaled } from "./time.ts";
import type { ErrorObject, RunStatus, TaskOutput, TaskRun, Warning } from "./types.ts";
import type { RunInput } from "./validation.ts";

/** Share of a run's duration spent queued before it turns running. */
const QUEUED_SHARE = 0.1;

export type TerminalStatus = "completed" | "failed";

export interface RunRecord {
  /** 0-based creation order since start or the last reset; indexes the run's seeded draws. */
  readonly seq: number;
  readonly runId: string;
  readonly input: RunInput;
  readonly processor: Processor;
  readonly createdAtMs: number;
  readonly createdAt: string;
  readonly warnings: Warning[] | null;
  /** From creation, wall-clock ms until running and until the terminal state. */
  readonly runningAfterMs: number;
  readonly durationMs: number;
  readonly failPlanned: boolean;
  readonly eventsEnabled: boolean;
  readonly elementBasis: boolean;
  /** The Task Group the run was added to (POST /v1/tasks/groups/{id}/runs), or null. */
  readonly taskgroupId: string | null;
  status: RunStatus;
  modifiedAt: string;
  startedAtMs: number | null;
  completedAtMs: number | null;
  error: ErrorObject | null;
  output: TaskOutput | null;
  finishedBy: "schedule" | "control" | null;
  timer: ReturnType<typeof setTimeout> | null;
  readonly listeners: Set<() => void>;
  readonly calls: Partial<Record<EndpointKey, number>>;
}

export function isTerminal(status: RunStatus): boolean {
  return status === "completed" || status === "failed" || status === "cancelled";
}

export function isActive(status: RunStatus): boolean {
  return status === "queued" || status === "running" || status === "cancelling";
}

/** The TaskRun exactly as GET /v1/tasks/runs/{id} returns it (and webhooks carry it). */
export function toTaskRun(run: RunRecord): TaskRun {
  return {
    run_id: run.runId,
    interaction_id: run.runId,
    status: run.status,
    is_active: isActive(run.status),
    warnings: run.warnings,
    error: run.error,
    processor: run.processor.name,
    metadata: run.input.metadata ?? null,
    taskgroup_id: run.taskgroupId,
    created_at: run.createdAt,
    modified_at: run.modifiedAt,
  };
}

export interface RunStoreOptions {
  config: () => SimConfig;
  faults: Faults;
  /** Called after every status change of a run, with the status it left. */
  onStatusChange?: (run: RunRecord, previous: RunStatus) => void;
  /** Called once per run, right after it reaches a terminal state. */
  onTerminal: (run: RunRecord) => void;
}

export interface CreateRunOptions {
  warnings: Warning[];
  elementBasis: boolean;
  taskgroupId?: string;
}

export class RunStore {
  readonly #runs = new Map<string, RunRecord>();
  readonly #options: RunStoreOptions;
  #nextSeq = 0;
  #created = 0;
  #completed = 0;
  #failed = 0;

  constructor(options: RunStoreOptions) {
    this.#options = options;
  }

  create(input: RunInput, processor: Processor, options: CreateRunOptions): RunRecord {
    const config = this.#options.config();
    const seq = this.#nextSeq++;
    const createdAtMs = nowMs();
    const createdAt = isoFromMs(createdAtMs);
    const draw = this.#options.faults.draw("duration", seq);
    // The fixed duration takes its own draw, so the default path's durations stay what they were.
    const durationMs =
      config.run_duration_ms === null
        ? scaled(processor.minLatencyMs + draw * (processor.maxLatencyMs - processor.minLatencyMs), config)
        : config.run_duration_ms +
          this.#options.faults.draw("duration-jitter", seq) * config.run_duration_jitter_ms;
    const run: RunRecord = {
      seq,
      runId: `trun_${randomBytes(16).toString("hex")}`,
      input,
      processor,
      createdAtMs,
      createdAt,
      warnings: options.warnings.length > 0 ? options.warnings : null,
      runningAfterMs: durationMs * QUEUED_SHARE,
      durationMs,
      failPlanned: this.#options.faults.happens("fail_runs", seq, config.fail_runs),
      eventsEnabled: input.enable_events ?? isProOrAbove(processor),
      elementBasis: options.elementBasis,
      taskgroupId: options.taskgroupId ?? null,
      status: "queued",
      modifiedAt: createdAt,
      startedAtMs: null,
      completedAtMs: null,
      error: null,
      output: null,
      finishedBy: null,
      timer: null,
      listeners: new Set(),
      calls: {},
    };
    this.#runs.set(run.runId, run);
    this.#created++;
    run.timer = setTimeout(() => this.#start(run), run.runningAfterMs);
    run.timer.unref();
    this.#evictIfFull(config.max_runs);
    return run;
  }

  get(runId: string): RunRecord | undefined {
    return this.#runs.get(runId);
  }

  list(): RunRecord[] {
    return [...this.#runs.values()];
  }

  counts(): {
    created: number;
    queued: number;
    running: number;
    completed: number;
    failed: number;
    stored: number;
  } {
    let queued = 0;
    let running = 0;
    for (const run of this.#runs.values()) {
      if (run.status === "queued") queued++;
      else if (run.status === "running") running++;
    }
    return {
      created: this.#created,
      queued,
      running,
      completed: this.#completed,
      failed: this.#failed,
      stored: this.#runs.size,
    };
  }

  /** Calls `listener` after every status change of the run; returns the unsubscribe function. */
  subscribe(run: RunRecord, listener: () => void): () => void {
    run.listeners.add(listener);
    return () => run.listeners.delete(listener);
  }

  /** Ends a run now. Returns false if it had already ended. */
  finish(
    run: RunRecord,
    status: TerminalStatus,
    finishedBy: "schedule" | "control",
    reason: string,
  ): boolean {
    if (isTerminal(run.status)) return false;
    if (run.timer) clearTimeout(run.timer);
    run.timer = null;
    const at = nowMs();
    run.startedAtMs ??= at;
    run.completedAtMs = at;
    run.modifiedAt = isoFromMs(at);
    run.finishedBy = finishedBy;
    const previous = run.status;
    run.status = status;
    if (status === "failed") {
      run.error = { ref_id: randomUUID(), message: MESSAGES.runFailed, detail: { reason } };
      this.#failed++;
    } else {
      run.output = this.outputFor(run, run.elementBasis);
      this.#completed++;
    }
    this.#options.onStatusChange?.(run, previous);
    this.#notify(run);
    this.#options.onTerminal(run);
    return true;
  }

  /** The run's output; regenerated (same content) when a /result call asks for per-element basis. */
  outputFor(run: RunRecord, elementBasis: boolean): TaskOutput {
    if (run.output && elementBasis === run.elementBasis) return run.output;
    return generateOutput({
      seed: this.#options.config().seed,
      input: run.input,
      processor: run.processor,
      elementBasis,
    });
  }

  /** Cancels every timer and forgets every run, and restarts the sequence numbers. */
  clear(): void {
    const forgotten = [...this.#runs.values()];
    this.#runs.clear();
    for (const run of forgotten) {
      if (run.timer) clearTimeout(run.timer);
      run.timer = null;
      // Wake long-polls so they answer (404: the run is gone) instead of hanging.
      this.#notify(run);
      run.listeners.clear();
    }
    this.#nextSeq = 0;
    this.#created = 0;
    this.#completed = 0;
    this.#failed = 0;
  }

  #start(run: RunRecord): void {
    if (run.status !== "queued") return;
    const at = nowMs();
    run.status = "running";
    run.startedAtMs = at;
    run.modifiedAt = isoFromMs(at);
    run.timer = setTimeout(
      () => {
        const failed = run.failPlanned;
        this.finish(
          run,
          failed ? "failed" : "completed",
          "schedule",
          failed ? "simulated failure (fail_runs)" : "",
        );
      },
      Math.max(0, run.durationMs - run.runningAfterMs),
    );
    run.timer.unref();
    this.#options.onStatusChange?.(run, "queued");
    this.#notify(run);
  }

  #notify(run: RunRecord): void {
    for (const listener of [...run.listeners]) listener();
  }

  /** Keeps memory bounded: forgets the oldest finished runs beyond max_runs (active runs stay). */
  #evictIfFull(maxRuns: number): void {
    if (this.#runs.size <= maxRuns) return;
    let excess = this.#runs.size - maxRuns;
    for (const [runId, run] of this.#runs) {
      if (excess <= 0) break;
      if (!isTerminal(run.status)) continue;
      this.#runs.delete(runId);
      excess--;
    }
  }
}
