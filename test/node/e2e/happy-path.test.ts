// Real processes on loopback: a user creates text, JSON and auto runs with callbacks; every result
// arrives at the receiver, verified with standardwebhooks, for two Parallel calls per run.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type E2EStack, isTerminal, listAllRuns, startE2EStack } from "./stack.ts";

describe("happy path on the local stack", () => {
  let e2e: E2EStack;
  beforeAll(async () => {
    e2e = await startE2EStack({ timeScale: 0.001 });
  }, 120_000);
  afterAll(async () => e2e?.stop());

  it("delivers text, JSON and auto results to the callback, verified, with two Parallel calls each", async () => {
    const callback = { url: e2e.receiver.url };
    const json = {
      processor: "base",
      input: { country: "France", year: 2023 },
      task_spec: {
        output_schema: {
          type: "json",
          json_schema: {
            type: "object",
            properties: {
              gdp: { type: "string", description: "GDP in USD" },
              growth: { type: "number" },
              sectors: {
                type: "array",
                items: {
                  type: "object",
                  properties: { name: { type: "string" }, share: { type: "number" } },
                  required: ["name", "share"],
                  additionalProperties: false,
                },
              },
              outlook: { type: "string", enum: ["up", "flat", "down"] },
            },
            required: ["gdp", "growth", "sectors", "outlook"],
            additionalProperties: false,
          },
        },
      },
      callback,
    };
    const text = {
      processor: "lite",
      input: "Summarise the history of the UN.",
      task_spec: { output_schema: "A short paragraph." },
      callback,
    };
    const auto = { processor: "pro", input: "Market map of EU battery makers", callback };
    const runs = {
      json: await e2e.createRun(json, "happy-json"),
      text: await e2e.createRun(text, "happy-text"),
      auto: await e2e.createRun(auto, "happy-auto"),
    };

    await e2e.driveUntil(async () => e2e.receiver.accepted().size >= 3, 60_000);

    const byRun = new Map([...e2e.receiver.accepted().values()].map((d) => [d.body?.data.run.id, d]));
    const jsonDelivery = byRun.get(runs.json.id)?.body;
    expect(jsonDelivery?.type).toBe("run.completed");
    const output = jsonDelivery?.data.output as {
      type: string;
      content: Record<string, unknown>;
      basis: Array<{ field: string }>;
    };
    expect(output.type).toBe("json");
    expect(Object.keys(output.content).sort()).toEqual(["gdp", "growth", "outlook", "sectors"]);
    expect(["up", "flat", "down"]).toContain(output.content.outlook);
    expect(output.basis.map((b) => b.field).sort()).toEqual(["gdp", "growth", "outlook", "sectors"]);

    const textOutput = byRun.get(runs.text.id)?.body?.data.output as { type: string; content: unknown };
    expect(textOutput.type).toBe("text");
    expect(typeof textOutput.content).toBe("string");
    expect(byRun.get(runs.auto.id)?.body?.data.run.status).toBe("completed");

    // The result is also stored and readable.
    const stored = await e2e.get<{ output: { type: string } }>(`/v1/runs/${runs.json.id}/result`);
    expect(stored.output.type).toBe("json");

    const all = await listAllRuns(e2e);
    expect(all.every((r) => isTerminal(r.status) && r.result_available)).toBe(true);
    const stats = await e2e.simStats();
    expect(stats.endpoints["POST /v1/tasks/runs"]).toBe(3);
    expect(stats.endpoints["GET /v1/tasks/runs/{id}/result"]).toBe(3);
    expect(stats.endpoints["GET /v1/tasks/runs/{id}"]).toBe(0);
    expect(e2e.receiver.deliveries.every((d) => d.verified)).toBe(true);
  }, 90_000);

  it("counts lengths as the simulator does (code points, as Parallel): 16 emoji pass both, 17 neither", async () => {
    const emoji = (n: number) => "\u{1F600}".repeat(n);
    // Accepted by the relay and then by the simulator: the run is queued, not rejected.
    const run = await e2e.createRun(
      { processor: "lite", input: "q", metadata: { [emoji(16)]: "v" } },
      "emoji-16",
    );
    expect(run.status).toBe("queued");

    const tooLong = { processor: "lite", input: "q", metadata: { [emoji(17)]: "v" } };
    const sim = await fetch(`${e2e.stack.simUrl}/v1/tasks/runs`, {
      method: "POST",
      headers: { "x-api-key": "sim-key", "content-type": "application/json" },
      body: JSON.stringify(tooLong),
    });
    expect(sim.status, await sim.text()).toBe(422);
    const relay = await fetch(`${e2e.stack.relayUrl}/v1/runs`, {
      method: "POST",
      headers: { authorization: `Bearer ${e2e.key.key}`, "content-type": "application/json" },
      body: JSON.stringify(tooLong),
    });
    const refused = (await relay.json()) as { error: { code: string; details: Array<{ path: string }> } };
    expect(relay.status).toBe(422);
    expect(refused.error.code).toBe("validation_failed");
    expect(refused.error.details.map((d) => d.path)).toEqual([`metadata.${emoji(17)}`]);
  }, 60_000);
});
