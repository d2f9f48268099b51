// Real processes on loopback (npm start's stack: simulator + wrangler dev with local D1 and R2): runs
// whose outputs are 5 MB and 50 MB (simulator metadata sim_output_bytes) complete, their callbacks
// arrive verified with output_url and output_bytes, and output_url returns the whole output.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type E2EStack, startE2EStack } from "./stack.ts";

const REPORT_SCHEMA = {
  type: "json",
  json_schema: {
    type: "object",
    properties: { title: { type: "string", enum: ["EU battery makers"] }, report: { type: "string" } },
    required: ["title", "report"],
    additionalProperties: false,
  },
};

interface LargeCallback {
  type: string;
  data: { run: { id: string }; output: unknown; output_url?: string; output_bytes?: number };
}

describe("large outputs on the local stack", () => {
  let e2e: E2EStack;
  beforeAll(async () => {
    e2e = await startE2EStack({ timeScale: 0.001 });
  }, 120_000);
  afterAll(async () => e2e?.stop());

  it("delivers a 5 MB JSON and a 50 MB text output end to end: callback with output_url, the whole output from it", async () => {
    const callback = { url: e2e.receiver.url };
    const runs = {
      json: await e2e.createRun(
        {
          processor: "base",
          input: "Market map of EU battery makers",
          task_spec: { output_schema: REPORT_SCHEMA },
          metadata: { sim_output_bytes: "5000000" },
          callback,
        },
        "large-5mb",
      ),
      text: await e2e.createRun(
        {
          processor: "lite",
          input: "History of the UN, in full",
          task_spec: { output_schema: "A long report." },
          metadata: { sim_output_bytes: "50000000" },
          callback,
        },
        "large-50mb",
      ),
    };

    await e2e.driveUntil(async () => e2e.receiver.accepted().size >= 2, 120_000);
    const byRun = new Map(
      [...e2e.receiver.accepted().values()].map((d) => [d.body?.data.run.id, d.body as LargeCallback | null]),
    );

    for (const [run, bytes, type] of [
      [runs.json, 5_000_000, "json"],
      [runs.text, 50_000_000, "text"],
    ] as const) {
      const delivered = byRun.get(run.id);
      expect(delivered?.type).toBe("run.completed");
      expect(delivered?.data.output).toBeNull();
      expect(delivered?.data.output_url).toBe(`${e2e.stack.relayUrl}/v1/runs/${run.id}/result`);
      expect(Math.abs((delivered?.data.output_bytes ?? 0) - bytes)).toBeLessThan(10_000);

      // output_url, with the key's credentials: the whole output, streamed, with its length (asked
      // uncompressed: a gzipped stream has no length up front).
      const response = await fetch(delivered?.data.output_url ?? "", {
        headers: { authorization: `Bearer ${e2e.key.key}`, "accept-encoding": "identity" },
      });
      expect(response.status).toBe(200);
      const text = await response.text();
      expect(Number(response.headers.get("content-length"))).toBe(Buffer.byteLength(text));
      const result = JSON.parse(text) as { run: { id: string }; output: { type: string; content: unknown } };
      expect(result.run.id).toBe(run.id);
      expect(result.output.type).toBe(type);
      expect(Buffer.byteLength(JSON.stringify(result.output))).toBe(delivered?.data.output_bytes);
      if (type === "json") {
        expect(result.output.content).toMatchObject({ title: "EU battery makers" });
      } else {
        expect(typeof result.output.content).toBe("string");
      }
    }
    expect(e2e.statuses.filter((s) => s >= 500)).toEqual([]);
  }, 240_000);
});
