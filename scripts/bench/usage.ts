// Bench part 9 (usage): D1 rows read by GET /v1/usage over 30 days of 10,000 runs a day, and rows
// written per accepted run with the usage rollup. The 300,000 runs are inserted by SQL (as part 4
// inserts finished runs), and the rollup rows are derived from them by one INSERT … SELECT … GROUP BY,
// which builds exactly the rows the per-run UPSERT (db/spend.ts recordAcceptedSpend) would have:
// one per key, day, scope (schedule or batch) and processor. The writes per run are measured on
// real creates through the API.

export interface RequestCost {
  rows_read: number;
  rows_written: number;
  queries: number;
}

export interface UsageBench {
  runs_stored: number;
  from: string;
  to: string;
  /** 30 days × 12 (scope, processor) pairs: what the per-run UPSERTs would have left. */
  rollup_rows: number;
  /** GET /v1/usage over the 30 days, per group_by. */
  usage_rows_read: Record<string, RequestCost>;
  /** POST /v1/runs accepted by Parallel (the rollup UPSERT included), averaged over `creates`. */
  create_rows_written_per_run: number;
  creates: number;
}

export const USAGE_DAYS = 30;
export const USAGE_RUNS_PER_DAY = 10_000;
const CHUNK = 100_000;

interface Deps {
  relayUrl: string;
  adminToken: string;
  persistDir: string;
  executeLocalSql: (persistDir: string, sql: string) => Promise<void>;
  /** The D1 cost of the last request to `path` the relay logged (waits for its line). */
  lastRequestCost: (method: string, path: string) => Promise<RequestCost>;
}

export async function usagePart(deps: Deps): Promise<UsageBench> {
  const admin = { authorization: `Bearer ${deps.adminToken}`, "content-type": "application/json" };
  const created = (await (
    await fetch(`${deps.relayUrl}/v1/keys`, {
      method: "POST",
      headers: admin,
      body: '{"name":"bench-usage"}',
    })
  ).json()) as { id: string; key: string };
  const auth = { authorization: `Bearer ${created.key}`, "content-type": "application/json" };

  // 30 days × 10,000 accepted runs, the last 30 days up to today: four processors, half of them
  // from three schedules, a third from two batches, the rest asked for directly (12 pairs a day).
  const total = USAGE_DAYS * USAGE_RUNS_PER_DAY;
  const to = new Date().toISOString().slice(0, 10);
  const from = new Date(Date.parse(to) - (USAGE_DAYS - 1) * 86_400_000).toISOString().slice(0, 10);
  for (let start = 0; start < total; start += CHUNK) {
    await deps.executeLocalSql(
      deps.persistDir,
      `WITH RECURSIVE seq(n) AS (SELECT ${start} UNION ALL SELECT n + 1 FROM seq WHERE n < ${start + CHUNK - 1})
       INSERT INTO runs (id, api_key_id, schedule_id, batch_id, parallel_run_id, status, processor, input,
                         created_at, updated_at, submitted_at, finished_at, result_stored_at, attempts, cost_micro_usd)
       SELECT printf('run_benchusage%08d', n), '${created.id}',
              CASE n % 6 WHEN 1 THEN 'sch_bench1' WHEN 2 THEN 'sch_bench2' WHEN 3 THEN 'sch_bench3' END,
              CASE n % 6 WHEN 4 THEN 'bat_bench1' WHEN 5 THEN 'bat_bench2' END,
              printf('trun_benchusage%08d', n), 'completed',
              CASE n % 4 WHEN 0 THEN 'lite' WHEN 1 THEN 'base' WHEN 2 THEN 'core' ELSE 'pro' END, '"q"',
              day, day, day, day, day, 0,
              CASE n % 4 WHEN 0 THEN 5000 WHEN 1 THEN 10000 WHEN 2 THEN 25000 ELSE 100000 END
       FROM (SELECT n, strftime('%Y-%m-%dT%H:%M:%fZ', '${from}', '+' || (n / ${USAGE_RUNS_PER_DAY}) || ' days') AS day FROM seq)`,
    );
  }
  await deps.executeLocalSql(
    deps.persistDir,
    `INSERT INTO usage_rollup (api_key_id, day, scope, processor, runs, cost_micro_usd)
     SELECT api_key_id, substr(submitted_at, 1, 10), COALESCE(schedule_id, batch_id, ''), processor, COUNT(*), SUM(cost_micro_usd)
     FROM runs WHERE api_key_id = '${created.id}' GROUP BY 1, 2, 3, 4`,
  );

  const usageRowsRead: Record<string, RequestCost> = {};
  for (const groupBy of ["day", "processor", "schedule", "batch"]) {
    const response = await fetch(`${deps.relayUrl}/v1/usage?from=${from}&to=${to}&group_by=${groupBy}`, {
      headers: auth,
    });
    const body = (await response.json()) as { totals: { runs: number }; groups: unknown[] };
    if (response.status !== 200 || body.totals.runs !== total) {
      throw new Error(
        `GET /v1/usage?group_by=${groupBy} answered ${response.status}: ${JSON.stringify(body)}`,
      );
    }
    usageRowsRead[groupBy] = await deps.lastRequestCost("GET", "/v1/usage");
  }

  // The admin's view of every key together (one primary-key seek per key).
  const adminResponse = await fetch(`${deps.relayUrl}/v1/usage?from=${from}&to=${to}&group_by=day`, {
    headers: admin,
  });
  await adminResponse.text();
  if (adminResponse.status !== 200) throw new Error(`admin GET /v1/usage answered ${adminResponse.status}`);
  usageRowsRead["day, admin, every key"] = await deps.lastRequestCost("GET", "/v1/usage");

  // Writes per accepted run, the rollup UPSERT included: creates through the API (the simulator accepts).
  const creates = 20;
  let written = 0;
  for (let i = 0; i < creates; i++) {
    const response = await fetch(`${deps.relayUrl}/v1/runs`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ processor: "lite", input: `Usage bench ${i}` }),
    });
    await response.text();
    if (response.status !== 202) throw new Error(`POST /v1/runs answered ${response.status}`);
    written += (await deps.lastRequestCost("POST", "/v1/runs")).rows_written;
  }
  return {
    runs_stored: total,
    from,
    to,
    rollup_rows: USAGE_DAYS * 12,
    usage_rows_read: usageRowsRead,
    create_rows_written_per_run: Math.round((written / creates) * 100) / 100,
    creates,
  };
}
