// Task Groups (reference §2.6): a group is a list of ordinary runs (RunStore's, with
// `taskgroup_id` set) plus what the group endpoints need — status counts kept up to date on every
// run status change, and an append-only event log for GET /v1/tasks/groups/{id}/events.
//
// Cursors are decimal strings: an event's `event_id` is its 1-based place in the group's log; a
// run's `event_id` in the runs stream is its 1-based place in the group (the order it was added).

import { randomBytes } from "node:crypto";
import { isActive, isTerminal, type RunRecord, toTaskRun } from "./runs.ts";
import { isoNow } from "./time.ts";
import type {
  Metadata,
  RunStatus,
  TaskGroup,
  TaskGroupStatus,
  TaskGroupStatusEvent,
  TaskRunEvent,
} from "./types.ts";

/** The status enum's order, for task_run_status_counts. */
const STATUS_ORDER: readonly RunStatus[] = [
  "queued",
  "action_required",
  "running",
  "completed",
  "failed",
  "cancelling",
  "cancelled",
];

export type GroupEvent = TaskGroupStatusEvent | TaskRunEvent;

export interface GroupRecord {
  readonly id: string;
  readonly metadata: Metadata | null;
  readonly createdAt: string;
  modifiedAt: string;
  /** Run ids in the order they were added. */
  readonly runIds: string[];
  readonly counts: Map<RunStatus, number>;
  /** Runs still queued, running or cancelling. */
  active: number;
  /** The events stream's log; events[i].event_id === String(i + 1). */
  readonly events: GroupEvent[];
  readonly listeners: Set<() => void>;
}

export interface AddedRuns {
  /** The runs stream cursor just before these runs; null for the group's first runs. */
  runCursor: string | null;
  /** The events stream cursor just before these runs; null for the group's first runs. */
  eventCursor: string | null;
}

/** A cursor (`last_event_id`) as a count of items to skip, or null if it is not one of `limit`'s. */
export function parseCursor(cursor: string | undefined, limit: number): number | null {
  if (cursor === undefined || cursor === "") return 0;
  if (!/^\d+$/.test(cursor)) return null;
  const position = Number(cursor);
  return position <= limit ? position : null;
}

export class GroupStore {
  readonly #groups = new Map<string, GroupRecord>();

  create(metadata: Metadata | null): GroupRecord {
    const createdAt = isoNow();
    const group: GroupRecord = {
      id: `tgrp_${randomBytes(16).toString("hex")}`,
      metadata,
      createdAt,
      modifiedAt: createdAt,
      runIds: [],
      counts: new Map(),
      active: 0,
      events: [],
      listeners: new Set(),
    };
    this.#groups.set(group.id, group);
    // The log starts with the empty group's status, so every events stream has a first event.
    this.#logStatus(group);
    return group;
  }

  get(id: string): GroupRecord | undefined {
    return this.#groups.get(id);
  }

  /** Records runs just created in the group (all queued). */
  add(group: GroupRecord, runs: readonly RunRecord[]): AddedRuns {
    const first = group.runIds.length === 0;
    const added: AddedRuns = {
      runCursor: first ? null : String(group.runIds.length),
      eventCursor: first ? null : String(group.events.length),
    };
    for (const run of runs) {
      group.runIds.push(run.runId);
      this.#count(group, run.status, 1);
      if (isActive(run.status)) group.active++;
    }
    if (runs.length > 0) {
      group.modifiedAt = isoNow();
      this.#logStatus(group);
      this.#notify(group);
    }
    return added;
  }

  /** RunStore's onStatusChange: keeps the counts, and logs a run that ends and the new status. */
  runChanged(run: RunRecord, previous: RunStatus): void {
    const group = run.taskgroupId === null ? undefined : this.#groups.get(run.taskgroupId);
    if (!group) return;
    this.#count(group, previous, -1);
    this.#count(group, run.status, 1);
    if (isActive(previous) && !isActive(run.status)) group.active--;
    group.modifiedAt = run.modifiedAt;
    if (!isTerminal(run.status)) return;
    group.events.push({
      type: "task_run.state",
      event_id: String(group.events.length + 1),
      run: toTaskRun(run),
      input: null,
      output: null,
    });
    this.#logStatus(group);
    this.#notify(group);
  }

  status(group: GroupRecord): TaskGroupStatus {
    const counts: Partial<Record<RunStatus, number>> = {};
    for (const status of STATUS_ORDER) {
      const n = group.counts.get(status) ?? 0;
      if (n > 0) counts[status] = n;
    }
    return {
      num_task_runs: group.runIds.length,
      task_run_status_counts: counts,
      is_active: group.active > 0,
      status_message: "",
      modified_at: group.modifiedAt,
    };
  }

  view(group: GroupRecord): TaskGroup {
    return {
      taskgroup_id: group.id,
      status: this.status(group),
      metadata: group.metadata,
      created_at: group.createdAt,
    };
  }

  /** Calls `listener` after every event logged for the group; returns the unsubscribe function. */
  subscribe(group: GroupRecord, listener: () => void): () => void {
    group.listeners.add(listener);
    return () => group.listeners.delete(listener);
  }

  clear(): void {
    this.#groups.clear();
  }

  #count(group: GroupRecord, status: RunStatus, delta: number): void {
    group.counts.set(status, (group.counts.get(status) ?? 0) + delta);
  }

  #logStatus(group: GroupRecord): void {
    group.events.push({
      type: "task_group_status",
      event_id: String(group.events.length + 1),
      status: this.status(group),
    });
  }

  #notify(group: GroupRecord): void {
    for (const listener of [...group.listeners]) listener();
  }
}
