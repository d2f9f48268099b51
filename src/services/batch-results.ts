// A batch's results in bulk: instead of one `/result` per run, one read of the Task Group's runs
// stream (`include_output=true`) brings the outputs of every run finished so far, resumed after
// `batches.results_event_id` across passes. Each output is placed as a single run's is
// (services/outputs.ts placeOutput: over 256 KiB to R2) and stored with the same guarded change and
// timeline event as the per-run fetch (the `result` step); a status the relay had not heard yet is
// applied first (the `parallel_status` step, as a webhook would). Finishing (per-run callbacks,
// schedule bookkeeping) is left to the finish_runs job, which the stored run is due for at once:
// finishing costs up to 12 calls a run, which one pass over hundreds of runs cannot afford.
//
// A pass spends at most the calls its message reserved (cron/costs.ts batch_results): a read of our
// runs and one D1 batch per page of the stream, an R2 put per large output, the cursor written at the
// end. Out of budget with more to read, it continues in a follow-up message under the same lease.
// When the stream shows every run finished and the batch is closed, the batch is completed and its
// batch.completed callback created, in one statement pair that only one worker can win.
import { type BatchResultsItem, endBatchResultsPass, findBatchRunsByIds } from "../db/batch-results";
import { type Batch, findBatch } from "../db/batches";
import { RUN_STEPS, stepGuard } from "../db/run-states";
import { changeRunStatements, type Run, type RunStatus } from "../db/runs";
import type { TaskGroupGetRunsResponse, TaskRunResult } from "../parallel/client";
import { RUN_ID_METADATA_KEY } from "../parallel/task-spec-checks";
import { completeBatch } from "./batch-completion";
import { batchResultsSafetyAt } from "./batch-timing";
import { isParallelTerminal, statusChanges } from "./completion";
import type { ServiceContext } from "./context";
import { INLINE_OUTPUT_MAX_BYTES, placeOutput } from "./outputs";

/** Stream events per page: one read of our runs and one D1 batch (two statements a run, four with a status). */
export const PAGE_RUNS = 100;
/** A page is written once its inline outputs reach this much JSON, whatever its length. */
const PAGE_BYTES = 4 * 1024 * 1024;
/** Calls a completion may spend: its statement pair, then the callback's first attempt and one inline retry. */
export const COMPLETION_CALLS = 11;

type StreamEvent = Extract<TaskGroupGetRunsResponse, { type: "task_run.state" }>;
type Output = TaskRunResult["output"];

export interface PassSummary {
  outcomes: string[];
  /** The pass stopped with more to read: it continues in a follow-up message under `lease`. */
  more: boolean;
}

/** One pass over a batch's runs stream, within `budget` calls (the batch row already taken: not counted). */
export async function runBatchResultsPass(
  ctx: ServiceContext,
  item: BatchResultsItem,
  budget: number,
): Promise<PassSummary> {
  let left = budget - 1;
  const batch = await findBatch(ctx.db, item.id);
  if (!batch || batch.completed_at) return { outcomes: ["gone"], more: false };
  const now = ctx.now();
  const at = now.toISOString();
  // Reserved for writing where the pass got to.
  left -= 1;

  // Closed, and every run already finished in D1 (the pass was poked by the last run's finish): no
  // need to read the stream at all.
  const triedFirst = Boolean(batch.closed_at && left >= COMPLETION_CALLS);
  if (triedFirst) {
    left -= 1;
    const completed = await completeBatch(ctx, batch.id);
    if (completed) return { outcomes: ["completed"], more: false };
  }

  let cursor = batch.results_event_id;
  let allFinished = !batch.taskgroup_id;
  let more = false;
  const outcomes: string[] = [];
  if (batch.taskgroup_id && left >= 2) {
    const read = await readStream(ctx, batch, left, now);
    left = read.left;
    cursor = read.cursor;
    allFinished = read.allFinished;
    more = read.more;
    outcomes.push(...read.outcomes);
  } else if (batch.taskgroup_id) {
    more = true;
  }

  // Tried again only if this pass changed a run since the first try.
  const wrote = outcomes.some((o) => o === "stored" || o === "finished" || o === "status");
  if (allFinished && batch.closed_at && !more && (!triedFirst || wrote)) {
    if (left >= COMPLETION_CALLS - 1) {
      // The pass's own end write is not needed: a completed batch has nothing due.
      const completed = await completeBatch(ctx, batch.id);
      if (completed) return { outcomes: [...outcomes, "completed"], more: false };
    } else {
      more = true;
    }
  }
  const nextAt = more ? at : batchResultsSafetyAt(ctx.config, now).toISOString();
  await endBatchResultsPass(ctx.db, item, at, cursor, nextAt, more).run();
  return { outcomes: outcomes.length > 0 ? outcomes : ["nothing_new"], more };
}

interface StreamRead {
  left: number;
  cursor: string | null;
  /** The stream ended and every run in it is finished at Parallel. */
  allFinished: boolean;
  more: boolean;
  outcomes: string[];
}

async function readStream(ctx: ServiceContext, batch: Batch, budget: number, now: Date): Promise<StreamRead> {
  let left = budget - 1;
  const groupId = batch.taskgroup_id as string;
  const abort = new AbortController();
  const opened = await ctx.parallel.taskGroupRuns(
    groupId,
    { include_output: true },
    batch.results_event_id,
    abort.signal,
  );
  const outcomes: string[] = [];
  let cursor = batch.results_event_id;
  if (!opened.ok) {
    ctx.log.warn("batch.results_stream_failed", {
      batch_id: batch.id,
      parallel_status: opened.status,
      kind: opened.kind,
      message: opened.message,
    });
    return { left, cursor, allFinished: false, more: false, outcomes: ["stream_failed"] };
  }
  // Advanced only over the stream's finished runs from its start: a run still active before a
  // finished one must be read again next time (the cursor is a position in the group).
  let prefixOpen = true;
  let outOfBudget = false;
  let refused = false;
  let page: StreamEvent[] = [];
  let pageBytes = 0;

  /** Writes the page; false when the budget ran out before all of it was handled. */
  const flush = async (): Promise<boolean> => {
    if (page.length === 0) return true;
    // A page costs a read and a write at least.
    if (left < 2) return false;
    const written = await writePage(ctx, batch, page, left, now);
    left = written.left;
    outcomes.push(...written.outcomes);
    for (const event of page.slice(0, written.done)) {
      if (prefixOpen && isParallelTerminal(event.run.status)) cursor = event.event_id ?? cursor;
      else prefixOpen = false;
    }
    const all = written.done === page.length;
    page = [];
    pageBytes = 0;
    return all;
  };

  try {
    for await (const event of opened.value) {
      if (event.type !== "task_run.state") {
        // An `error` event: Parallel refused the cursor (or the read). Reading again from the first
        // run is always safe: every store is guarded.
        ctx.log.warn("batch.results_stream_error", { batch_id: batch.id, event: JSON.stringify(event) });
        refused = true;
        break;
      }
      page.push(event);
      pageBytes += event.output ? JSON.stringify(event.output).length : 0;
      if ((page.length >= PAGE_RUNS || pageBytes >= PAGE_BYTES) && !(await flush())) {
        outOfBudget = true;
        break;
      }
    }
    if (!outOfBudget && !(await flush())) outOfBudget = true;
  } finally {
    abort.abort();
  }
  if (refused && cursor === batch.results_event_id && outcomes.length === 0) cursor = null;
  return {
    left,
    cursor,
    allFinished: !outOfBudget && !refused && prefixOpen,
    more: outOfBudget,
    outcomes,
  };
}

const STATUS_FROM: readonly RunStatus[] = RUN_STEPS.parallel_status.from;

/**
 * Writes one page: reads our runs named in it, places large outputs in R2, and stores every output
 * and status in one D1 batch. Returns how many of the page's events it handled (from the start):
 * fewer than all when the budget ran out for R2 puts.
 */
async function writePage(
  ctx: ServiceContext,
  batch: Batch,
  events: StreamEvent[],
  budget: number,
  now: Date,
): Promise<{ left: number; done: number; outcomes: string[] }> {
  const at = now.toISOString();
  let left = budget;
  const ids = events.map(ourRunId).filter((id): id is string => id !== null);
  left -= 1;
  const runs = new Map((await findBatchRunsByIds(ctx.db, batch.id, ids)).map((run) => [run.id, run]));
  const statements: D1PreparedStatement[] = [];
  const outcomes: string[] = [];
  let done = 0;
  for (const event of events) {
    const id = ourRunId(event);
    const run = id ? runs.get(id) : undefined;
    const state = event.run;
    if (!run || (run.parallel_run_id && run.parallel_run_id !== state.run_id)) {
      // Not one of this batch's runs (or one resubmitted under another Parallel run): not ours to store.
      if (isParallelTerminal(state.status)) outcomes.push("not_ours");
      done++;
      continue;
    }
    if (!isParallelTerminal(state.status)) {
      done++;
      continue;
    }
    let status = run.status;
    const change: D1PreparedStatement[] = [];
    if (STATUS_FROM.includes(run.status)) {
      // Parallel finished it and no webhook has told us yet: the status first, as a webhook would apply it.
      change.push(
        ...changeRunStatements(
          ctx.db,
          run,
          at,
          statusChanges(ctx.config, run, state, now),
          { kind: "status_changed", detail: { source: "batch_stream", from: run.status, to: state.status } },
          stepGuard("parallel_status"),
        ),
      );
      status = state.status as RunStatus;
    }
    if (status === "completed" && !run.result_stored_at) {
      if (!event.output) {
        // Not brought by the stream: the per-run /result path fetches it after its grace.
        outcomes.push("left_to_result");
      } else {
        const needsPut = JSON.stringify(event.output).length * 3 > INLINE_OUTPUT_MAX_BYTES;
        // An R2 put, and still the page's write after it.
        if (needsPut && left < 2) break;
        const placed = await placeOutput(
          ctx.outputs,
          run.id,
          event.output as unknown as Record<string, unknown>,
        );
        if (placed.output_key) left -= 1;
        change.push(...storeStatements(ctx, run, event.output, placed, state.warnings ?? run.warnings, now));
        outcomes.push("stored");
      }
    } else if (change.length > 0) {
      outcomes.push(status === "completed" ? "status" : "finished");
    }
    statements.push(...change);
    done++;
  }
  if (statements.length > 0) {
    left -= 1;
    await ctx.db.batch(statements);
  }
  if (done < events.length) outcomes.push("out_of_budget");
  return { left, done, outcomes };
}

function ourRunId(event: StreamEvent): string | null {
  const id = event.run.metadata?.[RUN_ID_METADATA_KEY];
  return typeof id === "string" ? id : null;
}

/**
 * The result stored as fetchAndStoreResult stores it (the `result` step, the same timeline event),
 * except that finishing is left to the finish_runs job, due at once.
 */
function storeStatements(
  ctx: ServiceContext,
  run: Run,
  output: Output,
  placed: Awaited<ReturnType<typeof placeOutput>>,
  warnings: unknown[] | null,
  now: Date,
): D1PreparedStatement[] {
  const at = now.toISOString();
  const storedIn = placed.output_key ? "r2" : "d1";
  const finishOwed = Boolean(run.callback_url || run.schedule_id);
  return changeRunStatements(
    ctx.db,
    run,
    at,
    {
      ...placed,
      warnings,
      result_stored_at: at,
      next_sweep_at: finishOwed ? at : null,
      lease_until: null,
    },
    {
      kind: "result_fetched",
      detail: {
        output_type: output.type,
        output_bytes: placed.output_bytes,
        stored_in: storedIn,
        source: "batch_stream",
      },
    },
    stepGuard("result"),
  );
}
