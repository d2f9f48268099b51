import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { COST } from "../../src/cron/costs";
import type { Env } from "../../src/env";
import { readConfig } from "../../src/env";
import {
  OUTPUT_MAX_BYTES,
  OUTPUT_MAX_PARTS,
  OUTPUT_PART_BYTES,
  OUTPUT_R2_CALLS,
  OutputSink,
  OutputTooLargeError,
  outputKey,
  outputPartBytes,
} from "../../src/services/outputs";
import { resultBodyIdleMs } from "../../src/services/timing";
import {
  api,
  completionWebhook,
  createTenant,
  emptyBackgroundWork,
  expectJson,
  fakeParallel,
  postJson,
  TEXT_RUN,
  taskRun,
} from "./harness";
import { tickAndWork } from "./queue-harness";

const encoder = new TextEncoder();
const CHUNK = 65_521;

/** A text output of `bytes` bytes of JSON, as /result's body (`{"run":…,"output":…}`). */
function resultBytes(parallelRunId: string, bytes: number): Uint8Array<ArrayBuffer> {
  const head = `{"run":${JSON.stringify(taskRun({ run_id: parallelRunId, status: "completed", is_active: false }))},"output":{"type":"text","basis":[],"content":"`;
  const tail = `"}}`;
  const filler = bytes - head.length - tail.length;
  const body = new Uint8Array(head.length + filler + tail.length);
  body.set(encoder.encode(head), 0);
  body.fill(0x61, head.length, head.length + filler);
  body.set(encoder.encode(tail), head.length + filler);
  return body;
}

/**
 * The body as a stream of CHUNK-byte chunks that counts what has been read from it; `stallAt` stops
 * it there (nothing more, never an end) until `release()` sends the rest.
 */
function countedBody(bytes: Uint8Array, options: { stallAt?: number; declare?: boolean } = {}) {
  const state = { pulled: 0 };
  let release: () => void = () => undefined;
  let released = new Promise<void>((resolve) => {
    release = resolve;
  });
  if (options.stallAt === undefined) released = Promise.resolve();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (options.stallAt !== undefined && state.pulled >= options.stallAt) await released;
      if (state.pulled >= bytes.length) return controller.close();
      const chunk = bytes.slice(state.pulled, state.pulled + CHUNK);
      state.pulled += chunk.length;
      controller.enqueue(chunk);
    },
  });
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (options.declare) headers["content-length"] = String(bytes.length);
  return { response: new Response(body, { headers }), state, release: () => release() };
}

/** OUTPUTS with every R2 call counted, and each part's number with the bytes read when it was sent. */
function recordingBucket(bucket: R2Bucket, pulled: () => number) {
  const calls: string[] = [];
  const parts: Array<{ part: number; pulled: number }> = [];
  const bound = <T extends object>(target: T, name: string, value: unknown) => {
    if (typeof value !== "function") return value;
    return (...args: unknown[]) => {
      calls.push(name);
      return (value as (...a: unknown[]) => unknown).apply(target, args);
    };
  };
  const recorded = new Proxy(bucket, {
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (property !== "createMultipartUpload") return bound(target, String(property), value);
      return async (...args: Parameters<R2Bucket["createMultipartUpload"]>) => {
        calls.push("createMultipartUpload");
        const upload = await target.createMultipartUpload(...args);
        return new Proxy(upload, {
          get(u, p) {
            if (p === "uploadPart")
              return (n: number, v: Parameters<R2MultipartUpload["uploadPart"]>[1]) => {
                calls.push("uploadPart");
                parts.push({ part: n, pulled: pulled() });
                return u.uploadPart(n, v);
              };
            return bound(u, String(p), Reflect.get(u, p, u));
          },
        });
      };
    },
  });
  return { bucket: recorded, calls, parts };
}

async function createRun(tenant: Awaited<ReturnType<typeof createTenant>>) {
  return expectJson<{ id: string; parallel_run_id: string }>(
    await postJson("/v1/runs", TEXT_RUN, tenant.auth),
    202,
  );
}

const storedRow = (id: string) =>
  env.DB.prepare("SELECT status, output_key, output_bytes, attempts, error FROM runs WHERE id = ?")
    .bind(id)
    .first<{
      status: string;
      output_key: string | null;
      output_bytes: number | null;
      attempts: number;
      error: string | null;
    }>();

async function timelineDetail(id: string, auth: Record<string, string>, kind: string) {
  const timeline = await expectJson<{ events: Array<{ kind: string; detail: Record<string, unknown> }> }>(
    await api(`/v1/runs/${id}/timeline`, { headers: auth }),
    200,
  );
  return timeline.events.find((e) => e.kind === kind)?.detail;
}

afterEach(() => vi.restoreAllMocks());

describe("part sizes", () => {
  it("grows the part with the declared length so that any output fits in OUTPUT_MAX_PARTS parts", () => {
    expect(outputPartBytes(5_000_000)).toBe(OUTPUT_PART_BYTES);
    for (const bytes of [31_000_000, 50_000_000, 80_000_000, OUTPUT_MAX_BYTES]) {
      const part = outputPartBytes(bytes);
      expect(part % (1024 * 1024)).toBe(0);
      expect(Math.ceil(bytes / part), `${bytes}`).toBeLessThanOrEqual(OUTPUT_MAX_PARTS);
    }
    // Unknown (no length, or compressed): the largest part, so the largest output fits.
    expect(OUTPUT_MAX_PARTS * outputPartBytes(null)).toBe(OUTPUT_MAX_BYTES);
  });

  it("refuses an output over its parts' room, and drops the upload begun", async () => {
    // The smallest part R2 takes, so the test moves 15 MiB, not 96.
    const part = 5 * 1024 * 1024;
    const sink = new OutputSink(env.OUTPUTS, "run_toolarge", part);
    const chunk = new Uint8Array(1024 * 1024).fill(0x61);
    let refused: unknown = null;
    try {
      for (let i = 0; i <= OUTPUT_MAX_PARTS * 5; i++) await sink.write(chunk.slice());
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(OutputTooLargeError);
    await sink.abort();
    expect(await env.OUTPUTS.head(outputKey("run_toolarge"))).toBeNull();
  }, 60_000);
});

describe("a large /result within the isolate's memory and the invocation's calls", () => {
  it("passes the output on to R2 part by part while the body is still arriving", async () => {
    const tenant = await createTenant();
    let body: ReturnType<typeof countedBody> | null = null;
    let bytes = new Uint8Array(0);
    fakeParallel({
      result: (call) => {
        bytes = resultBytes(call.path.split("/")[4] ?? "", 30_000_000);
        // Stalled after two parts' worth: what was sent to R2 by then was sent before the body ended.
        body = countedBody(bytes, { declare: true, stallAt: 2 * OUTPUT_PART_BYTES + 3 * CHUNK });
        return body.response;
      },
    });
    const run = await createRun(tenant);
    const pulled = () => (body as ReturnType<typeof countedBody> | null)?.state.pulled ?? 0;
    const recorded = recordingBucket(env.OUTPUTS, pulled);
    const webhook = completionWebhook(run.parallel_run_id, {
      bindings: { ...env, OUTPUTS: recorded.bucket },
    });
    await vi.waitFor(() => expect(recorded.parts).toHaveLength(2), { timeout: 30_000, interval: 50 });
    expect(pulled()).toBeLessThan(bytes.length);
    (body as ReturnType<typeof countedBody> | null)?.release();
    await webhook;

    const partBytes = outputPartBytes(bytes.length);
    expect(recorded.parts.map((p) => p.part)).toEqual([1, 2, 3]);
    // Each part went out once its bytes had arrived, with at most a part and a chunk (and the
    // small inline look-ahead) read beyond what R2 had: never the whole output held.
    recorded.parts.forEach(({ part, pulled }) => {
      expect(pulled, `part ${part}`).toBeLessThanOrEqual(part * partBytes + 256 * 1024 + 2 * CHUNK);
    });
    const row = await storedRow(run.id);
    expect(row).toMatchObject({ status: "completed", attempts: 1 });
    const object = await env.OUTPUTS.get(row?.output_key ?? "");
    const stored = new Uint8Array((await object?.arrayBuffer()) ?? new ArrayBuffer(0));
    const text = new TextDecoder().decode(bytes);
    expect(stored.length).toBe(row?.output_bytes);
    expect(new TextDecoder().decode(stored)).toBe(text.slice(text.indexOf(',"output":') + 10, -1));
    expect(object?.etag).toMatch(/-3$/);
  }, 120_000);

  it("ends an attempt whose body stalls (no bytes for the idle limit), and stores the result at the next try", async () => {
    await emptyBackgroundWork();
    const tenant = await createTenant();
    let stalled = true;
    const bodies: Array<ReturnType<typeof countedBody>> = [];
    const parallel = fakeParallel({
      result: (call) => {
        const bytes = resultBytes(call.path.split("/")[4] ?? "", 3_000_000);
        // Half the body, then nothing (the connection open): the invocation would wait for ever.
        const body = countedBody(bytes, stalled ? { stallAt: bytes.length / 2 } : {});
        bodies.push(body);
        return body.response;
      },
    });
    const run = await createRun(tenant);
    const scaled = { ...env, POLL_TIME_SCALE: "0.001" } as Env;
    const started = Date.now();
    await completionWebhook(run.parallel_run_id, { bindings: scaled });
    expect(Date.now() - started).toBeGreaterThanOrEqual(resultBodyIdleMs(readConfig(scaled)));
    expect(await storedRow(run.id)).toMatchObject({ status: "completed", attempts: 1, output_key: null });
    expect(await env.OUTPUTS.head(outputKey(run.id))).toBeNull();
    expect(await timelineDetail(run.id, tenant.auth, "result_fetch_retry_scheduled")).toMatchObject({
      attempt: 1,
      parallel_status: 200,
      code: "result_body_stalled",
      message: expect.stringContaining("sent nothing for"),
    });
    bodies[0]?.release();

    // The next try (the sweeper's, after the backoff): the body arrives whole and is stored.
    stalled = false;
    expect((await tickAndWork(new Date(Date.now() + 5 * 60_000))).summaries).toMatchObject({
      fetch_results: { claimed: 1, stored: 1 },
    });
    expect(await storedRow(run.id)).toMatchObject({ attempts: 2, output_bytes: expect.any(Number) });
    expect(parallel.calls.filter((c) => c.path.endsWith("/result"))).toHaveLength(2);
  }, 60_000);

  it("stores a 40 MB output through the consumer at the Free plan's budget within its reservation", async () => {
    await emptyBackgroundWork();
    const tenant = await createTenant();
    // The webhook's own fetch fails; the sweeper's consumer fetches it.
    let available = false;
    let bytes = new Uint8Array(0);
    fakeParallel({
      result: (call) => {
        if (!available) return Response.json({ error: { message: "busy" } }, { status: 503 });
        bytes = resultBytes(call.path.split("/")[4] ?? "", 40_000_000);
        return countedBody(bytes, { declare: true }).response;
      },
    });
    const run = await createRun(tenant);
    await completionWebhook(run.parallel_run_id);
    available = true;
    const body = { pulled: 0 };
    const recorded = recordingBucket(env.OUTPUTS, () => body.pulled);
    const lines: Array<Record<string, unknown>> = [];
    const info = console.info;
    vi.spyOn(console, "info").mockImplementation((line: unknown) => {
      if (typeof line === "string" && line.includes('"queue.batch"')) lines.push(JSON.parse(line));
      else info(line);
    });
    const free = { ...env, SUBREQUEST_BUDGET: "50", OUTPUTS: recorded.bucket } as Env;
    expect((await tickAndWork(new Date(Date.now() + 5 * 60_000), { env: free })).summaries).toMatchObject({
      fetch_results: { claimed: 1, stored: 1 },
    });
    // 13 MiB parts for 40 MB: 3 parts, the upload's creation and completion.
    expect(recorded.calls.filter((c) => c === "uploadPart")).toHaveLength(3);
    expect(recorded.calls.length).toBeLessThanOrEqual(OUTPUT_R2_CALLS);
    // The consumer counted every call, R2's parts included, and stayed within the message's worst case.
    const batch = lines.find((l) => (l.jobs as Record<string, unknown> | undefined)?.fetch_results);
    expect(batch?.calls).toBeGreaterThanOrEqual(recorded.calls.length + 2);
    expect(batch?.calls).toBeLessThanOrEqual(COST.fetch_results);
    expect(batch?.budget).toBe(50);
    const row = await storedRow(run.id);
    const outputStart = new TextDecoder().decode(bytes.subarray(0, 4096)).indexOf(',"output":') + 10;
    expect(row?.output_bytes).toBe(bytes.length - 1 - outputStart);
  }, 120_000);

  it("refuses a result whose declared length is over what a fetch may store: failed at once, not downloaded", async () => {
    await emptyBackgroundWork();
    const tenant = await createTenant();
    const pulled = { bytes: 0 };
    const parallel = fakeParallel({
      result: () => {
        const body = new ReadableStream<Uint8Array>({
          pull(controller) {
            pulled.bytes += CHUNK;
            controller.enqueue(new Uint8Array(CHUNK).fill(0x20));
          },
        });
        return new Response(body, {
          headers: { "content-type": "application/json", "content-length": String(OUTPUT_MAX_BYTES * 2) },
        });
      },
    });
    const run = await createRun(tenant);
    await completionWebhook(run.parallel_run_id);
    const row = await storedRow(run.id);
    expect(row?.status).toBe("failed");
    expect(JSON.parse(row?.error ?? "{}")).toMatchObject({
      code: "result_too_large",
      message: expect.stringContaining(`at most ${OUTPUT_MAX_BYTES} bytes`),
    });
    // At most what the stream buffered ahead: not downloaded.
    expect(pulled.bytes).toBeLessThan(1024 * 1024);
    expect(parallel.calls.filter((c) => c.path.endsWith("/result"))).toHaveLength(1);
    // Nothing left due for the result: it is not fetched again.
    expect((await tickAndWork(new Date(Date.now() + 60 * 60_000))).summaries).not.toMatchObject({
      fetch_results: { claimed: 1 },
    });
  });
});
