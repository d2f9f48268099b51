// The batch export's memory and cost at 100,000 rows, on the local stack (`wrangler dev`, local D1):
//   npm exec -- node scripts/bench-batch-export.ts
// A batch of BENCH_EXPORT_ROWS (default 100,000) completed runs with small JSON outputs (one citation
// each) is written straight into local D1, then GET /v1/batches/:id/results is read whole as JSONL and
// as CSV, three times each. Reported: the peak resident set the request added to the relay's workerd
// (scripts/bench/memory.ts: an upper bound of the isolate's), the bytes and lines, seconds, and the
// D1 queries and rows read of the request (its canonical log line). Kept apart from scripts/bench.ts:
// part 7 (batches) belongs to the batch submission's bench; this is the export's own figure.
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import { join } from "node:path";
import { peakMemoryOf, workerPid } from "./bench/memory.ts";
import { BENCH_WEBHOOK_SECRET } from "./bench/webhooks.ts";
import { createApiKey, executeLocalSql, freePort, startLocalStack } from "./local-stack.ts";

const ROWS = Number(process.env.BENCH_EXPORT_ROWS ?? 100_000);
const ADMIN_TOKEN = "bench-admin-token";

interface RequestLine {
  event: string;
  path?: string;
  d1_queries?: number;
  d1_rows_read?: number;
}

async function main() {
  process.env.X_LOCAL_OBSERVABILITY = "false";
  const persistDir = await mkdtemp(join(os.tmpdir(), "taskrelay-bench-export-"));
  const lines: RequestLine[] = [];
  const stack = await startLocalStack({
    port: await freePort(),
    simPort: await freePort(),
    adminToken: ADMIN_TOKEN,
    webhookSecret: BENCH_WEBHOOK_SECRET,
    timeScale: 0.01,
    persistDir,
    simEnv: {},
    relayVars: { SUBREQUEST_BUDGET: "1000" },
    onOutput: (line) => {
      if (process.env.BENCH_EXPORT_DEBUG && line.includes("/results")) console.log(line);
      if (!line.includes('"http.request"')) return;
      try {
        lines.push(JSON.parse(line.slice(line.indexOf("{"))) as RequestLine);
      } catch {
        // not a log line
      }
    },
  });
  try {
    const key = await createApiKey(stack.relayUrl, ADMIN_TOKEN, "bench-export");
    const batch = "bat_01M8BENCHEXPORT000000000";
    const at = "2026-01-01T00:00:00.000Z";
    console.log(`writing a batch of ${ROWS.toLocaleString("en-US")} completed runs into local D1…`);
    await executeLocalSql(
      persistDir,
      `INSERT INTO batches (id, api_key_id, name, status, template, input_count, created_at, updated_at, closed_at)
       VALUES ('${batch}', '${key.id}', 'bench', 'completed', '{"processor":"lite"}', ${ROWS}, '${at}', '${at}', '${at}');
       WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ${ROWS - 1})
       INSERT INTO runs (id, api_key_id, status, processor, input, output, output_bytes, created_at, updated_at,
         finished_at, result_stored_at, attempts, batch_id, batch_index)
       SELECT printf('run_bench_export_%08d', i), '${key.id}', 'completed', 'lite', json_object('company', 'Company ' || i),
         json_object('type', 'json', 'content', json_object('company', 'Company ' || i, 'founded', 1900 + i % 100,
           'hq', json_object('city', 'City ' || (i % 500), 'country', 'US'), 'tags', json_array('a', 'b')),
           'basis', json_array(json_object('field', 'founded', 'reasoning', 'From the company registry.',
             'citations', json_array(json_object('url', 'https://example.com/' || i))))),
         260, '${at}', '${at}', '${at}', '${at}', 0, '${batch}', i FROM n;`,
    );
    const pid = workerPid(stack.processGroups().relay as number);
    if (!pid) throw new Error("no workerd process found for the relay");
    const results: Array<Record<string, number | string>> = [];
    for (const format of ["jsonl", "csv"] as const) {
      for (let rep = 0; rep < 3; rep++) {
        let bytes = 0;
        let newlines = 0;
        const started = Date.now();
        const memory = await peakMemoryOf(pid, async () => {
          const response = await fetch(`${stack.relayUrl}/v1/batches/${batch}/results?format=${format}`, {
            headers: { authorization: `Bearer ${key.key}` },
          });
          if (!response.ok || !response.body) throw new Error(`export answered ${response.status}`);
          // Read as a client would, never holding the file.
          for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
            bytes += chunk.length;
            for (const byte of chunk) if (byte === 10) newlines++;
          }
        });
        await new Promise((r) => setTimeout(r, 500));
        const line = lines.filter((l) => l.path === `/v1/batches/${batch}/results`).at(-1);
        results.push({
          format,
          rep: rep + 1,
          seconds: (Date.now() - started) / 1000,
          mb: Math.round((bytes / 2 ** 20) * 10) / 10,
          lines: newlines,
          peak_added_mb: memory.peak_added_mb,
          peak_rss_mb: memory.peak_rss_mb,
          d1_queries: line?.d1_queries ?? Number.NaN,
          d1_rows_read: line?.d1_rows_read ?? Number.NaN,
        });
        console.log(JSON.stringify(results.at(-1)));
      }
    }
    console.table(results);
  } finally {
    await stack.stop();
    await rm(persistDir, { recursive: true, force: true });
  }
}

await main();
