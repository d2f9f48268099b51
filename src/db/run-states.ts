// The run's life in one place: its states, the steps that change a run, and the states each step
// may change it from. Every guarded update of a run (db/runs.ts changeRun) takes its guard from
// here, so a step that lost a race changes nothing, and this table is all that can happen to a run:
//
//   submitting ──submit──▶ queued/running/… ──parallel_status──▶ completed ──result──▶ (stored)
//        │                       │   ▲ poll (backoff)                  └──result──▶ failed
//        ├──submit──▶ rejected / failed          └──poll──▶ expired ──parallel_status──▶ completed/failed/cancelled
//        └──parallel_status (a create whose response was lost) ──▶ any status Parallel reports
import type { RunStatus } from "./runs";

export const ACTIVE_STATUSES = ["queued", "running", "action_required", "cancelling"] as const;
export const TERMINAL_STATUSES = ["completed", "failed", "cancelled", "rejected", "expired"] as const;
export const RUN_STATUSES = ["submitting", ...ACTIVE_STATUSES, ...TERMINAL_STATUSES] as const;

interface Step {
  /** The states the step may change a run from. */
  from: readonly RunStatus[];
  /** What else must hold of the row (SQL over its columns, written in code). */
  also?: string;
}

export const RUN_STEPS = {
  /** A create at Parallel answered (accepted, refused, retried, given up): a submission in flight. */
  submit: { from: ["submitting"] },
  /**
   * Parallel's word, from a webhook or a poll: any run Parallel has not finished. `expired` is only
   * taskrelay's judgement that Parallel took too long, so a late terminal status replaces it; a
   * status Parallel set (completed, failed, cancelled) or a refusal (rejected) is never changed.
   */
  parallel_status: { from: ["submitting", ...ACTIVE_STATUSES, "expired"] },
  /** A poll's own outcome (still active, backed off, expired at the deadline, not found): an active run. */
  poll: { from: ACTIVE_STATUSES },
  /** Parallel's event stream reports a queued run started. */
  progress_started: { from: ["queued"] },
  /** The result stored, or its fetch given up: a completed run whose result is missing. */
  result: { from: ["completed"], also: "result_stored_at IS NULL" },
  /** Finishing (schedule bookkeeping, the delivery): a finished run, its result stored if it has one. */
  finish: { from: TERMINAL_STATUSES, also: "status <> 'completed' OR result_stored_at IS NOT NULL" },
} as const satisfies Record<string, Step>;

export type RunStep = keyof typeof RUN_STEPS;

/** The WHERE condition of a step's guarded update: the run is in a state the step may change it from. */
export function stepGuard(step: RunStep): { sql: string } {
  const { from, ...rest } = RUN_STEPS[step] as Step;
  const states = `status IN (${from.map((s) => `'${s}'`).join(", ")})`;
  return { sql: rest.also ? `${states} AND (${rest.also})` : states };
}
