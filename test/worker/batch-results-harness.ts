// Batches for the tests of the bulk results, the export, the batch callback and the dashboard page,
// made as the batch API will make them (migration 0014's contract): a batch row and one ordinary run
// per input (batch_id, batch_index), the run's callback set from the batch's when per_run. The Task
// Group is the simulator's (sim/, in-process) reached through the official SDK at the HTTP boundary.
import { env } from "cloudflare:workers";
import { http } from "msw";
import Parallel from "parallel-web";
import { insertRun, type Run } from "../../src/db/runs";
import { newId } from "../../src/ids";
import { RUN_ID_METADATA_KEY } from "../../src/parallel/task-spec-checks";
import { PARALLEL } from "./harness";
import { network } from "./setup";

export interface TestBatch {
  id: string;
  runs: Run[];
}

export interface BatchOptions {
  apiKeyId: string;
  inputs: Array<string | Record<string, unknown>>;
  template?: Record<string, unknown>;
  callbackUrl?: string | null;
  perRun?: boolean;
  closed?: boolean;
  taskgroupId?: string | null;
  status?: string;
  name?: string;
  at?: Date;
}

/** A batch and its runs (submitting, as the batch API stores them before submission). */
export async function insertBatch(options: BatchOptions): Promise<TestBatch> {
  const at = options.at ?? new Date();
  const iso = at.toISOString();
  const id = newId("bat", at);
  const template = options.template ?? { processor: "lite" };
  await env.DB.prepare(
    `INSERT INTO batches (id, api_key_id, name, status, template, callback_url, callback_per_run, taskgroup_id,
       input_count, created_at, updated_at, closed_at, status_counts)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, json_object('submitting', ?9))`,
  )
    .bind(
      id,
      options.apiKeyId,
      options.name ?? "test batch",
      options.status ?? "running",
      JSON.stringify(template),
      options.callbackUrl ?? null,
      options.perRun ? 1 : 0,
      options.taskgroupId ?? null,
      options.inputs.length,
      iso,
      iso,
      options.closed === false ? null : iso,
    )
    .run();
  const runs: Run[] = options.inputs.map((input, index) => ({
    id: newId("run", at),
    api_key_id: options.apiKeyId,
    schedule_id: null,
    parallel_run_id: null,
    interaction_id: null,
    status: "submitting",
    processor: String(template.processor ?? "lite"),
    input,
    task_spec: (template.task_spec as Record<string, unknown> | undefined) ?? null,
    metadata: null,
    source_policy: null,
    previous_interaction_id: null,
    enable_events: null,
    mcp_servers: null,
    callback_url: options.perRun ? (options.callbackUrl ?? null) : null,
    idempotency_key: null,
    request_hash: null,
    output: null,
    warnings: null,
    error: null,
    created_at: iso,
    updated_at: iso,
    submitted_at: null,
    finished_at: null,
    result_stored_at: null,
    deadline_at: null,
    attempts: 0,
    next_sweep_at: null,
    lease_until: null,
    batch_id: id,
    batch_index: index,
  }));
  // insertRun does not know the batch columns (i15-batches adds them): set them after.
  for (let i = 0; i < runs.length; i += 40) {
    const chunk = runs.slice(i, i + 40);
    await env.DB.batch(
      chunk.flatMap((run) => [
        insertRun(env.DB, run),
        env.DB.prepare("UPDATE runs SET batch_id = ?, batch_index = ? WHERE id = ?").bind(
          id,
          run.batch_index,
          run.id,
        ),
      ]),
    );
  }
  return { id, runs };
}

/** What these tests use of the simulator (sim/server.ts); typed here, since sim/ is Node code outside this tsconfig. */
interface Simulator {
  app: { fetch(request: Request): Response | Promise<Response> };
  control: {
    runs(filter?: {
      limit?: number;
    }): Array<{ run: { run_id: string; status: string; is_active: boolean }; seq: number }>;
    finishRun(runId: string, status?: "completed" | "failed" | "cancelled"): unknown;
  };
}

// A path TypeScript does not follow (sim/ is type-checked with tsconfig.node.json); Vite bundles it.
const { createSimulator } = (await import("../../sim/server" as string)) as {
  createSimulator(settings: unknown): Simulator;
};

/** The simulator, in this isolate, answering every call to PARALLEL; each call counted by path. */
export function simulatorAtParallel(settings: Record<string, unknown> = {}) {
  const sim: Simulator = createSimulator({ api_key: "test-parallel-key", ...settings });
  const calls: Array<{ method: string; path: string; search: string }> = [];
  network.use(
    http.all(`${PARALLEL}/*`, async ({ request }) => {
      const url = new URL(request.url);
      calls.push({ method: request.method, path: url.pathname, search: url.search });
      return sim.app.fetch(new Request(`http://sim${url.pathname}${url.search}`, request));
    }),
  );
  const client = new Parallel({
    apiKey: "test-parallel-key",
    baseURL: PARALLEL,
    maxRetries: 0,
    fetch: (input, init) => fetch(input, init),
  });
  return { sim, calls, client };
}

/**
 * Submits the batch's runs to a new Task Group at the simulator as the batch submission will: one
 * add-runs call per 1,000, each input with taskrelay's run id in metadata; records the Parallel run
 * ids on our runs (queued) and the group on the batch.
 */
export async function submitToGroup(client: Parallel, batch: TestBatch, processor = "lite") {
  const group = await client.taskGroup.create({});
  for (let i = 0; i < batch.runs.length; i += 1000) {
    const chunk = batch.runs.slice(i, i + 1000);
    const added = await client.taskGroup.addRuns(group.taskgroup_id, {
      inputs: chunk.map((run) => ({
        processor,
        input: run.input,
        metadata: { [RUN_ID_METADATA_KEY]: run.id },
        ...(run.task_spec ? { task_spec: run.task_spec as never } : {}),
      })),
    });
    const at = new Date().toISOString();
    for (let j = 0; j < chunk.length; j += 40) {
      await env.DB.batch(
        chunk
          .slice(j, j + 40)
          .map((run, k) =>
            env.DB.prepare(
              "UPDATE runs SET status = 'queued', parallel_run_id = ?, submitted_at = ?, deadline_at = ?, next_sweep_at = ? WHERE id = ?",
            ).bind(added.run_ids[j + k], at, "2999-01-01T00:00:00.000Z", "2999-01-01T00:00:00.000Z", run.id),
          ),
      );
    }
  }
  await env.DB.prepare("UPDATE batches SET taskgroup_id = ? WHERE id = ?")
    .bind(group.taskgroup_id, batch.id)
    .run();
  return group.taskgroup_id;
}

/**
 * `count` finished runs appended to a batch in one statement (a recursive CTE), each completed with a
 * small JSON output and a citation: many rows without thousands of round trips.
 */
export async function insertFinishedRuns(batchId: string, apiKeyId: string, count: number, from = 0) {
  const at = new Date().toISOString();
  await env.DB.prepare(
    `INSERT INTO runs (id, api_key_id, status, processor, input, output, output_bytes, created_at, updated_at,
       finished_at, result_stored_at, attempts, batch_id, batch_index)
     WITH RECURSIVE n(i) AS (SELECT CAST(?1 AS INTEGER) UNION ALL SELECT i + 1 FROM n WHERE i < ?1 + ?2 - 1)
     SELECT printf('run_%s_%08d', ?3, i), ?4, 'completed', 'lite', json_object('company', 'Company ' || i),
       json_object('type', 'json', 'content', json_object('company', 'Company ' || i, 'founded', 1900 + i % 100),
         'basis', json_array(json_object('field', 'founded', 'reasoning', 'r',
           'citations', json_array(json_object('url', 'https://example.com/' || i))))),
       150, ?5, ?5, ?5, ?5, 0, ?3, i
     FROM n`,
  )
    .bind(from, count, batchId, apiKeyId, at)
    .run();
  // Counted as the batch API and the status trigger would have (migration 0022).
  await env.DB.prepare(
    `UPDATE batches SET input_count = input_count + ?1,
       status_counts = json_set(status_counts, '$.completed', COALESCE(json_extract(status_counts, '$.completed'), 0) + ?1)
     WHERE id = ?2`,
  )
    .bind(count, batchId)
    .run();
}
