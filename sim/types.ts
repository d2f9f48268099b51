// Wire shapes of Parallel's Task API v1 (reference §3), as the simulator emits them.

import type { RunInput } from "./validation.ts";

export type RunStatus =
  | "queued"
  | "action_required"
  | "running"
  | "completed"
  | "failed"
  | "cancelling"
  | "cancelled";

export type Metadata = Record<string, string | number | boolean>;

export interface ErrorObject {
  ref_id: string;
  message: string;
  detail: Record<string, unknown> | null;
}

export interface ErrorResponse {
  type: "error";
  error: ErrorObject;
}

export interface Warning {
  type: "spec_validation_warning" | "input_validation_warning" | "warning";
  message: string;
  detail: Record<string, unknown> | null;
}

/** Key order matches what the reference's webhook test vector (§6.4) serialises. */
export interface TaskRun {
  run_id: string;
  interaction_id: string;
  status: RunStatus;
  is_active: boolean;
  warnings: Warning[] | null;
  error: ErrorObject | null;
  processor: string;
  metadata: Metadata | null;
  taskgroup_id: string | null;
  created_at: string;
  modified_at: string;
}

export interface Citation {
  url: string;
  title: string | null;
  excerpts: string[];
}

export interface FieldBasis {
  field: string;
  citations: Citation[];
  reasoning: string;
  confidence: string | null;
}

export interface TextOutput {
  type: "text";
  content: string;
  basis: FieldBasis[];
  mcp_tool_calls: null;
}

export interface JsonOutput {
  type: "json";
  content: Record<string, unknown>;
  basis: FieldBasis[];
  /** Only populated for auto-schema runs. */
  output_schema: Record<string, unknown> | null;
  mcp_tool_calls: null;
}

export type TaskOutput = TextOutput | JsonOutput;

export interface TaskRunResult {
  run: TaskRun;
  output: TaskOutput;
}

/** Task Groups (reference §2.6; SDK 1.3.3 `resources/task-group.ts`). */
export interface TaskGroupStatus {
  num_task_runs: number;
  /** Only statuses some run has, e.g. {"completed": 1}; {} for an empty group. */
  task_run_status_counts: Partial<Record<RunStatus, number>>;
  is_active: boolean;
  status_message: string | null;
  modified_at: string | null;
}

export interface TaskGroup {
  taskgroup_id: string;
  status: TaskGroupStatus;
  metadata: Metadata | null;
  created_at: string | null;
}

export interface TaskGroupRunResponse {
  status: TaskGroupStatus;
  run_ids: string[];
  run_cursor: string | null;
  event_cursor: string | null;
}

export interface TaskGroupStatusEvent {
  type: "task_group_status";
  event_id: string;
  status: TaskGroupStatus;
}

/** A run's state in a group stream; `input` and `output` only when asked for (runs stream). */
export interface TaskRunEvent {
  type: "task_run.state";
  event_id: string;
  run: TaskRun;
  input: RunInput | null;
  output: TaskOutput | null;
}

export interface ErrorEvent {
  type: "error";
  error: ErrorObject;
}
