// A batch's results as a file, one line per input in input order (GET /v1/batches/:id/results):
// JSONL or CSV, streamed as the client reads it, never built. The runs are read from D1 in keyset
// pages over `runs_by_batch` (batch_index after the last one sent), each page bounded in bytes by
// the stored sizes (one query: a running sum stops it), so memory holds one page whatever the
// batch's length. Outputs in R2 are streamed from the bucket into the line.
//
// JSONL: {"index", "run_id", "status", "input", "output", "citations", "error"} per line; `output`
// is the output as GET /v1/runs/:id/result returns it ({type, content, basis, …}), `citations` the
// basis's citation URLs (each once, in order; null for an output in R2 whose basis is over
// BASIS_MAX_BYTES), `error` the run's error or null.
//
// CSV (RFC 4180: CRLF, fields with a quote, comma or line break quoted, quotes doubled; a UTF-8 BOM
// so spreadsheets read it as UTF-8): index, run_id, status, input, one column per output field,
// citations (space-separated URLs), error (its message). A JSON output's fields are flattened:
// nested objects' paths joined with `.`, arrays written as JSON. The output columns are fixed before
// the first line: the template's JSON output schema's properties (nested object properties
// flattened) when it has one, else the fields of the first page's outputs in the order first seen;
// a field outside them is in the JSONL only. A text output is one `output` column. A cell that
// would start a spreadsheet formula (=, +, -, @ and not a number) is prefixed with `'`.
import { type Batch, findBatch } from "../db/batches";
import type { RunError, RunStatus } from "../db/runs";
import { ApiError } from "../errors";
import { JsonObjectSplitter } from "../json-split";
import { describeError } from "../log";
import type { ServiceContext } from "./context";
import type { Viewer } from "./viewer";

export const EXPORT_FORMATS = ["jsonl", "csv"] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** The most runs one page reads. */
export const EXPORT_PAGE_ROWS = 5_000;
/** A page stops once its inputs and inline outputs reach this many bytes (one run more at most). */
export const EXPORT_PAGE_BYTES = 8 * 1024 * 1024;
/**
 * Calls kept back from the invocation's budget (the key, the batch, the page that would not fit): an
 * R2 output past the rest is written as its URL instead of its content.
 */
const RESERVED_CALLS = 4;

interface ExportRow {
  batch_index: number;
  id: string;
  status: RunStatus;
  input: string;
  output: string | null;
  output_key: string | null;
  error: string | null;
}

export interface BatchExport {
  batch: Batch;
  body: ReadableStream<Uint8Array>;
  contentType: string;
  filename: string;
}

/** The batch's results as a stream, if this viewer may see the batch (not_found otherwise). */
export async function exportBatchResults(
  ctx: ServiceContext,
  viewer: Viewer,
  batchId: string,
  format: ExportFormat,
  /** Resuming a cut export: only the inputs after this batch_index (-1: from the first). */
  after = -1,
): Promise<BatchExport> {
  const batch = await findBatch(ctx.db, batchId, viewer.kind === "key" ? viewer.apiKeyId : undefined);
  if (!batch) throw new ApiError("not_found", `No batch ${batchId}.`);
  const lines = format === "csv" ? csvLines(ctx, batch, after) : jsonlLines(ctx, batch, after);
  return {
    batch,
    body: toStream(ctx, batch.id, lines),
    contentType: format === "csv" ? "text/csv; charset=utf-8" : "application/x-ndjson",
    filename: `${batch.id}.${format}`,
  };
}

/** Where an export cut short by the budget stops: the last index sent, for `?after=`. */
interface Cut {
  after: number | null;
}

/**
 * Pages of the batch's runs in input order after `after`, each one query; stops at the budget, and
 * then says in `cut` where it stopped (the caller ends the file with the resume line).
 */
async function* pages(
  ctx: ServiceContext,
  batchId: string,
  budget: Budget,
  from: number,
  cut: Cut,
): AsyncGenerator<ExportRow[]> {
  let after = from;
  for (;;) {
    if (!budget.take()) {
      ctx.log.warn("batch.export_cut", { batch_id: batchId, after_index: after });
      cut.after = after;
      return;
    }
    const { results } = await ctx.db
      .prepare(
        `SELECT batch_index, id, status, input, output, output_key, error, own FROM (
           SELECT batch_index, id, status, input, output, output_key, error,
             SUM(length(input) + CASE WHEN output_key IS NULL THEN COALESCE(output_bytes, 0) ELSE 0 END)
               OVER (ORDER BY batch_index ROWS UNBOUNDED PRECEDING) AS running,
             length(input) + CASE WHEN output_key IS NULL THEN COALESCE(output_bytes, 0) ELSE 0 END AS own
           FROM runs WHERE batch_id = ?1 AND batch_index > ?2 ORDER BY batch_index LIMIT ?3)
         WHERE running - own < ?4 ORDER BY batch_index`,
      )
      .bind(batchId, after, EXPORT_PAGE_ROWS, EXPORT_PAGE_BYTES)
      .all<ExportRow & { own: number }>();
    if (results.length === 0) return;
    yield results;
    after = results[results.length - 1]?.batch_index ?? after;
    // A page short of both limits was the last: no empty read to learn it (nor a cut for want of one).
    const bytes = results.reduce((sum, row) => sum + row.own, 0);
    if (results.length < EXPORT_PAGE_ROWS && bytes < EXPORT_PAGE_BYTES) return;
  }
}

/** Calls this export may still make: the invocation's budget less what it keeps back. */
class Budget {
  constructor(private left: number) {}
  take(): boolean {
    if (this.left <= 0) return false;
    this.left -= 1;
    return true;
  }
  /** A call only if more than `keep` would be left after it (R2 reads leave room for the pages). */
  takeKeeping(keep: number): boolean {
    if (this.left <= keep) return false;
    this.left -= 1;
    return true;
  }
}

const newBudget = (ctx: ServiceContext) => new Budget(ctx.config.SUBREQUEST_BUDGET - RESERVED_CALLS);

type Line = string | ReadableStream<Uint8Array>;

/** The path that continues an export cut after `after`. */
export function resumePath(batchId: string, format: ExportFormat, after: number): string {
  return `/v1/batches/${batchId}/results?format=${format}&after=${after}`;
}

/** The first cell of the CSV record that ends a cut export (no input's index looks like it). */
export const CSV_CUT_MARK = "#cut";

async function* jsonlLines(ctx: ServiceContext, batch: Batch, from: number): AsyncGenerator<Line> {
  const budget = newBudget(ctx);
  const cut: Cut = { after: null };
  for await (const page of pages(ctx, batch.id, budget, from, cut)) {
    for (const row of page) {
      const head = `{"index":${row.batch_index},"run_id":${JSON.stringify(row.id)},"status":${JSON.stringify(row.status)},"input":${row.input},"output":`;
      const error = row.error ?? "null";
      if (row.output_key) {
        const object = budget.takeKeeping(2) ? await ctx.outputs.get(row.output_key) : null;
        if (object) {
          // The output streamed through as it comes; its basis kept on the way (the content is
          // scanned past, json-split.ts), for the citation URLs.
          const basis = new BasisReader();
          yield head;
          yield tap(object.body, (chunk) => basis.write(chunk));
          yield `,"citations":${JSON.stringify(basis.citations())},"error":${error}}\n`;
          continue;
        }
        // Past the invocation's budget: where to fetch it instead.
        yield `${head}null,"output_url":${JSON.stringify(`/v1/runs/${row.id}/result`)},"citations":null,"error":${error}}\n`;
        continue;
      }
      const output = row.output ? (JSON.parse(row.output) as Record<string, unknown>) : null;
      yield `${head}${row.output ?? "null"},"citations":${JSON.stringify(citationUrls(output))},"error":${error}}\n`;
    }
  }
  // Cut short by the invocation's budget: the last line says where to go on (it has no "index").
  if (cut.after !== null) {
    yield `${JSON.stringify({ cut: { after: cut.after, next: resumePath(batch.id, "jsonl", cut.after) } })}\n`;
  }
}

/** A basis kept (and parsed) up to this size; past it the line's citations are null. */
export const BASIS_MAX_BYTES = 4 * 1024 * 1024;

/**
 * The `basis` member of an output object arriving in chunks (an R2 output on its way into the line),
 * kept by json-split's scanner while the rest of the object is scanned past: one basis's worth of
 * memory, whatever the content's size. A basis over BASIS_MAX_BYTES, or an object json-split cannot
 * read, gives null citations: the line still carries the output as stored.
 */
class BasisReader {
  private readonly splitter = new JsonObjectSplitter({ basis: { keep: true, maxBytes: BASIS_MAX_BYTES } });
  private failed = false;

  write(chunk: Uint8Array) {
    if (this.failed || this.splitter.settled) return;
    try {
      this.splitter.write(chunk);
    } catch {
      this.failed = true;
    }
  }

  citations(): string[] | null {
    if (this.failed) return null;
    if (!this.splitter.settled && !this.splitter.ended) return null;
    const basis = this.splitter.keptValues().get("basis");
    return citationUrls({ basis });
  }
}

/** The basis's citation URLs, each once, in order. */
export function citationUrls(output: Record<string, unknown> | null): string[] {
  const urls = new Set<string>();
  const basis = Array.isArray(output?.basis) ? output.basis : [];
  for (const field of basis as Array<{ citations?: Array<{ url?: unknown }> }>) {
    for (const citation of field?.citations ?? [])
      if (typeof citation?.url === "string") urls.add(citation.url);
  }
  return [...urls];
}

const FIXED_COLUMNS = ["index", "run_id", "status", "input"] as const;

async function* csvLines(ctx: ServiceContext, batch: Batch, from: number): AsyncGenerator<Line> {
  const budget = newBudget(ctx);
  const cut: Cut = { after: null };
  const fromSchema = schemaColumns(batch.template);
  let names: string[] | null = null;
  let textColumn = false;
  const header = () => {
    const outputColumns = textColumn ? ["output"] : (names ?? []).map(columnName);
    return `\uFEFF${[...FIXED_COLUMNS, ...outputColumns, "citations", "error"].map(csvCell).join(",")}\r\n`;
  };
  for await (const page of pages(ctx, batch.id, budget, from, cut)) {
    if (names === null) {
      // Fixed before the first line: the schema's fields, else the first page's (inline outputs).
      names =
        fromSchema ?? firstPageColumns(page.map((row) => (row.output ? parseObject(row.output) : null)));
      textColumn = names.length === 0;
      yield header();
    }
    for (const row of page) {
      // One output parsed at a time (an R2 one is one object's worth of memory).
      const output = await readOutput(ctx, row, budget);
      const content = output?.content;
      const fields =
        !textColumn && content && typeof content === "object" && !Array.isArray(content)
          ? names.map((path) => cellValue(valueAt(content as Record<string, unknown>, path)))
          : textColumn
            ? [cellValue(content ?? (row.output_key && !output ? `/v1/runs/${row.id}/result` : null))]
            : names.map(() => "");
      const error = row.error ? ((parseObject(row.error) as RunError | null)?.message ?? row.error) : "";
      const input = row.input.startsWith('"') ? (JSON.parse(row.input) as string) : row.input;
      const cells = [
        String(row.batch_index),
        row.id,
        row.status,
        input,
        ...fields,
        citationUrls(output).join(" "),
        error,
      ];
      yield `${cells.map(csvCell).join(",")}\r\n`;
    }
  }
  if (names === null) {
    // No run at all: the header alone.
    names = fromSchema ?? [];
    textColumn = names.length === 0;
    yield header();
  }
  // Cut short by the invocation's budget: a last record `#cut,<after>,<path>` (empty cells after, to
  // the header's width) says where to go on.
  if (cut.after !== null) {
    const width = FIXED_COLUMNS.length + (textColumn ? 1 : names.length) + 2;
    const cells = [CSV_CUT_MARK, String(cut.after), resumePath(batch.id, "csv", cut.after)];
    while (cells.length < width) cells.push("");
    yield `${cells.map(csvCell).join(",")}\r\n`;
  }
}

function parseObject(text: string): Record<string, unknown> | null {
  const value = JSON.parse(text) as unknown;
  return value && typeof value === "object" ? (value as Record<string, unknown>) : null;
}

/** A run's stored output, parsed: the CSV flattens its fields (an R2 output is one object's worth of memory). */
async function readOutput(
  ctx: ServiceContext,
  row: ExportRow,
  budget: Budget,
): Promise<Record<string, unknown> | null> {
  if (row.output) return parseObject(row.output);
  if (!row.output_key || !budget.takeKeeping(2)) return null;
  const object = await ctx.outputs.get(row.output_key);
  return object ? ((await object.json()) as Record<string, unknown>) : null;
}

/**
 * The output columns the template's output schema gives: its properties, nested objects' flattened
 * (`a.b`). [] for a text schema; null when there is no JSON schema to read (auto, none).
 */
export function schemaColumns(template: Record<string, unknown>): string[] | null {
  const spec = template.task_spec as { output_schema?: unknown } | undefined;
  const schema = spec?.output_schema;
  if (typeof schema === "string") return [];
  if (!schema || typeof schema !== "object") return null;
  const { type, json_schema } = schema as { type?: string; json_schema?: unknown };
  if (type === "text") return [];
  if (type !== "json" && type !== undefined) return null;
  if (!json_schema || typeof json_schema !== "object") return null;
  const paths: string[] = [];
  const walk = (node: unknown, prefix: string) => {
    const properties = (node as { properties?: Record<string, unknown> } | null)?.properties;
    if (!properties || typeof properties !== "object") return false;
    for (const [key, child] of Object.entries(properties)) {
      const path = prefix ? `${prefix}.${key}` : key;
      const childType = (child as { type?: unknown } | null)?.type;
      if (!(childType === "object" && walk(child, path))) paths.push(path);
    }
    return true;
  };
  return walk(json_schema, "") ? paths : null;
}

/** Without a schema: the first page's JSON outputs' fields, flattened, in the order first seen. */
function firstPageColumns(outputs: Array<Record<string, unknown> | null>): string[] {
  const seen = new Set<string>();
  for (const output of outputs) {
    const content = output?.content;
    if (content && typeof content === "object" && !Array.isArray(content)) {
      for (const path of flatPaths(content as Record<string, unknown>, "")) seen.add(path);
    }
  }
  return [...seen];
}

function flatPaths(value: Record<string, unknown>, prefix: string): string[] {
  return Object.entries(value).flatMap(([key, child]) => {
    const path = prefix ? `${prefix}.${key}` : key;
    return child && typeof child === "object" && !Array.isArray(child)
      ? flatPaths(child as Record<string, unknown>, path)
      : [path];
  });
}

function valueAt(content: Record<string, unknown>, path: string): unknown {
  if (path in content) return content[path];
  let node: unknown = content;
  for (const part of path.split(".")) {
    if (!node || typeof node !== "object" || Array.isArray(node)) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

/** An output column is named by its path, unless that clashes with one of ours. */
function columnName(path: string): string {
  return [...FIXED_COLUMNS, "citations", "error"].includes(path) ? `output.${path}` : path;
}

function cellValue(value: unknown): string {
  if (value === undefined || value === null) return "";
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return JSON.stringify(value);
}

const FORMULA_START = /^[=+\-@\t\r]/;

/** RFC 4180: quoted when it holds a quote, comma or line break; a formula-looking text defused. */
export function csvCell(value: string): string {
  const safe = FORMULA_START.test(value) && Number.isNaN(Number(value)) ? `'${value}` : value;
  return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}

const encoder = new TextEncoder();

/** The lines as bytes, pulled one at a time as the client reads (a stream is passed through). */
function toStream(ctx: ServiceContext, batchId: string, lines: AsyncGenerator<Line>) {
  let inner: ReadableStreamDefaultReader<Uint8Array> | null = null;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        for (;;) {
          if (inner) {
            const { done, value } = await inner.read();
            if (!done) {
              controller.enqueue(value);
              return;
            }
            inner = null;
          }
          const next = await lines.next();
          if (next.done) {
            controller.close();
            return;
          }
          if (typeof next.value === "string") {
            controller.enqueue(encoder.encode(next.value));
            return;
          }
          inner = next.value.getReader();
        }
      } catch (error) {
        ctx.log.error("batch.export_failed", { batch_id: batchId, error: describeError(error) });
        controller.error(error);
      }
    },
    async cancel() {
      await inner?.cancel();
      await lines.return(undefined);
    },
  });
}

/** The stream as it is, each chunk also handed to `see` on the way. */
function tap(body: ReadableStream<Uint8Array>, see: (chunk: Uint8Array) => void): ReadableStream<Uint8Array> {
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        see(chunk);
        controller.enqueue(chunk);
      },
    }),
  );
}
