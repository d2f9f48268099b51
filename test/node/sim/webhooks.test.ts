// Webhook delivery checked by independent implementations: node:crypto written here, and the
// Standard Webhooks reference library (raw format for the documented scheme, default for whsec_).

import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";
import { afterEach, describe, expect, it } from "vitest";
import type { SimHandle } from "../../../sim/server.ts";
import type { TaskRun } from "../../../sim/types.ts";
import { signingKey, signPayload, webhookBody } from "../../../sim/webhooks.ts";
import {
  call,
  type ReceivedWebhook,
  type Receiver,
  sdk,
  sleep,
  startReceiver,
  startTestSim,
  until,
} from "./harness.ts";

// Reference §6.4, verbatim.
const VECTOR = {
  id: "whevent_abc123def456",
  timestamp: 1751498975,
  body: '{"timestamp":"2025-04-23T20:21:48.037943Z","type":"task_run.status","data":{"run_id":"trun_9907962f83aa4d9d98fd7f4bf745d654","interaction_id":"trun_9907962f83aa4d9d98fd7f4bf745d654","status":"completed","is_active":false,"warnings":null,"error":null,"processor":"core","metadata":{"key":"value"},"taskgroup_id":null,"created_at":"2025-04-23T20:21:48.037943Z","modified_at":"2025-04-23T20:22:47.819416Z"}}',
  rawSecret: "test-webhook-secret",
  rawSignature: "v1,4uy8qTlF+zmPelY3+wLTdj//o0Uk53WTA8QyQjxCai4=",
  whsecSecret: "whsec_YS0zMi1ieXRlLXRlc3Qtc2lnbmluZy1rZXktMDAwMSE=",
  whsecSignature: "v1,HHR/WVLUiwo8afKOXtXwlGUmRuoErUyEqcFeK9V5F5E=",
  whsecUsedRawSignature: "v1,TmaWyzoY1OD4VAtwty2xXIOyoOzHbPPVU/6io+5oJO4=",
};

/** The verifier a receiver would write: HMAC over "id.timestamp.body", any matching v1 entry. */
function verifiesWith(key: Buffer, webhook: ReceivedWebhook): boolean {
  const id = String(webhook.headers["webhook-id"]);
  const timestamp = String(webhook.headers["webhook-timestamp"]);
  const expected = createHmac("sha256", key).update(`${id}.${timestamp}.${webhook.body}`).digest();
  return String(webhook.headers["webhook-signature"])
    .split(" ")
    .some((entry) => {
      const [version, signature] = entry.split(",");
      const given = Buffer.from(signature ?? "", "base64");
      return version === "v1" && given.length === expected.length && timingSafeEqual(given, expected);
    });
}

function headersOf(webhook: ReceivedWebhook): Record<string, string> {
  return {
    "webhook-id": String(webhook.headers["webhook-id"]),
    "webhook-timestamp": String(webhook.headers["webhook-timestamp"]),
    "webhook-signature": String(webhook.headers["webhook-signature"]),
  };
}

let sim: SimHandle | undefined;
let receiver: Receiver | undefined;
afterEach(async () => {
  await sim?.close();
  await receiver?.close();
  sim = undefined;
  receiver = undefined;
});

async function runWithWebhook(
  handle: SimHandle,
  url: string,
  input = "webhook me",
): Promise<{ runId: string }> {
  const run = await sdk(handle).taskRun.create({
    input,
    processor: "lite",
    metadata: { tenant: "t1" },
    webhook: { url, event_types: ["task_run.status"] },
    betas: ["webhook-2025-08-12"],
  });
  return { runId: run.run_id };
}

describe("the reference test vector (§6.4)", () => {
  it("signs with the secret's bytes (documented scheme)", () => {
    expect(signPayload(signingKey(VECTOR.rawSecret, "raw"), VECTOR.id, VECTOR.timestamp, VECTOR.body)).toBe(
      VECTOR.rawSignature,
    );
    expect(signPayload(signingKey(VECTOR.whsecSecret, "raw"), VECTOR.id, VECTOR.timestamp, VECTOR.body)).toBe(
      VECTOR.whsecUsedRawSignature,
    );
  });

  it("signs with a whsec_ secret's decoded key (Standard Webhooks)", () => {
    expect(
      signPayload(signingKey(VECTOR.whsecSecret, "whsec"), VECTOR.id, VECTOR.timestamp, VECTOR.body),
    ).toBe(VECTOR.whsecSignature);
  });

  it("serialises the body byte for byte", () => {
    const run: TaskRun = {
      run_id: "trun_9907962f83aa4d9d98fd7f4bf745d654",
      interaction_id: "trun_9907962f83aa4d9d98fd7f4bf745d654",
      status: "completed",
      is_active: false,
      warnings: null,
      error: null,
      processor: "core",
      metadata: { key: "value" },
      taskgroup_id: null,
      created_at: "2025-04-23T20:21:48.037943Z",
      modified_at: "2025-04-23T20:22:47.819416Z",
    };
    expect(webhookBody(run, "2025-04-23T20:21:48.037943Z")).toBe(VECTOR.body);
  });
});

describe("delivery", () => {
  it("raw mode: signed with the secret's bytes; body is the TaskRun as GET returns it", async () => {
    receiver = await startReceiver();
    sim = await startTestSim({ webhook_secret: "raw-mode-secret", run_duration_ms: 20 });
    const { runId } = await runWithWebhook(sim, receiver.url);
    const [webhook] = await receiver.waitFor(1);
    if (!webhook) throw new Error("no webhook");

    expect(webhook.headers["content-type"]).toBe("application/json");
    expect(webhook.headers["webhook-id"]).toMatch(/^whevent_[0-9a-f]{32}$/);
    const timestamp = Number(webhook.headers["webhook-timestamp"]);
    expect(Math.abs(timestamp - Date.now() / 1000)).toBeLessThan(5);
    expect(webhook.headers["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/);
    expect(verifiesWith(Buffer.from("raw-mode-secret", "utf8"), webhook)).toBe(true);
    expect(verifiesWith(Buffer.from("another-secret", "utf8"), webhook)).toBe(false);
    expect(() =>
      new Webhook("raw-mode-secret", { format: "raw" }).verify(webhook.body, headersOf(webhook)),
    ).not.toThrow();

    const payload = JSON.parse(webhook.body) as { timestamp: string; type: string; data: TaskRun };
    expect(JSON.stringify(payload)).toBe(webhook.body);
    expect(Object.keys(payload)).toEqual(["timestamp", "type", "data"]);
    expect(payload.type).toBe("task_run.status");
    expect(payload.timestamp).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/);
    const current = await call(sim, "GET", `/v1/tasks/runs/${runId}`);
    expect(payload.data).toEqual(current.json);
    expect(payload.data).toMatchObject({
      run_id: runId,
      status: "completed",
      is_active: false,
      metadata: { tenant: "t1" },
    });
    expect(payload.data).not.toHaveProperty("output");
  });

  it("whsec mode: signed with the base64-decoded key", async () => {
    const secret = `whsec_${randomBytes(32).toString("base64")}`;
    receiver = await startReceiver();
    sim = await startTestSim({ webhook_secret: secret, signature_mode: "whsec", run_duration_ms: 20 });
    await runWithWebhook(sim, receiver.url);
    const [webhook] = await receiver.waitFor(1);
    if (!webhook) throw new Error("no webhook");
    expect(verifiesWith(Buffer.from(secret.slice("whsec_".length), "base64"), webhook)).toBe(true);
    expect(verifiesWith(Buffer.from(secret, "utf8"), webhook)).toBe(false);
    expect(() => new Webhook(secret).verify(webhook.body, headersOf(webhook))).not.toThrow();
  });

  it("rotation: two space-separated signatures, one per secret", async () => {
    receiver = await startReceiver();
    sim = await startTestSim({
      webhook_secret: "new-secret",
      webhook_secret_previous: "old-secret",
      run_duration_ms: 20,
    });
    await runWithWebhook(sim, receiver.url);
    const [webhook] = await receiver.waitFor(1);
    if (!webhook) throw new Error("no webhook");
    const entries = String(webhook.headers["webhook-signature"]).split(" ");
    expect(entries).toHaveLength(2);
    const id = String(webhook.headers["webhook-id"]);
    const ts = String(webhook.headers["webhook-timestamp"]);
    const sign = (secret: string): string =>
      `v1,${createHmac("sha256", secret).update(`${id}.${ts}.${webhook.body}`).digest("base64")}`;
    expect(entries).toEqual([sign("new-secret"), sign("old-secret")]);
    for (const secret of ["new-secret", "old-secret"]) {
      expect(() =>
        new Webhook(secret, { format: "raw" }).verify(webhook.body, headersOf(webhook)),
      ).not.toThrow();
    }
  });

  it("a failed run is delivered with its error", async () => {
    receiver = await startReceiver();
    sim = await startTestSim({ fail_runs: 1, run_duration_ms: 20 });
    const { runId } = await runWithWebhook(sim, receiver.url);
    const [webhook] = await receiver.waitFor(1);
    const payload = JSON.parse(webhook?.body ?? "") as { data: TaskRun };
    expect(payload.data).toMatchObject({
      run_id: runId,
      status: "failed",
      is_active: false,
      error: { ref_id: expect.any(String), message: "Task execution failed" },
    });
  });

  it("no webhook for runs created without one; event_types may be omitted", async () => {
    receiver = await startReceiver();
    sim = await startTestSim({ run_duration_ms: 10 });
    const client = sdk(sim);
    await client.taskRun.create({ input: "no hook", processor: "lite" });
    await client.taskRun.create({
      input: "hook without types",
      processor: "lite",
      webhook: { url: receiver.url },
      betas: ["webhook-2025-08-12"],
    });
    await receiver.waitFor(1);
    const current = sim;
    await until(() => current.control.stats().runs.completed === 2);
    expect(receiver.received).toHaveLength(1);
    expect(sim.control.stats().webhooks.sent).toBe(1);
  });
});

describe("retries", () => {
  it("retries non-2xx answers with the same webhook-id and body, and a fresh timestamp and signature", async () => {
    // 500, then 200. Back-off 5 s × 0.2 = 1 s, so the two attempts are signed in different seconds.
    receiver = await startReceiver((n) => (n === 0 ? 500 : 200));
    sim = await startTestSim({ time_scale: 0.2, run_duration_ms: 10, webhook_retry_jitter: 0 });
    const { runId } = await runWithWebhook(sim, receiver.url);
    const attempts = await receiver.waitFor(2, 4_000);
    const [first, second] = attempts;
    if (!first || !second) throw new Error("missing attempts");
    expect(second.headers["webhook-id"]).toBe(first.headers["webhook-id"]);
    expect(second.body).toBe(first.body);
    expect(Number(second.headers["webhook-timestamp"])).toBeGreaterThan(
      Number(first.headers["webhook-timestamp"]),
    );
    expect(second.headers["webhook-signature"]).not.toBe(first.headers["webhook-signature"]);
    for (const attempt of attempts)
      expect(verifiesWith(Buffer.from("sim-webhook-secret"), attempt)).toBe(true);
    expect(second.atMs - first.atMs).toBeGreaterThanOrEqual(950);

    const current = sim;
    // The receiver has the request before the sim has read the answer.
    const log = await until(() => {
      const entries = current.control.webhooks({ runId });
      return entries.length === 2 && entries;
    });
    expect(log.map((a) => [a.attempt, a.outcome, a.status_code, a.next_attempt_in_ms])).toEqual([
      [1, "http_error", 500, 1_000],
      [2, "delivered", 200, null],
    ]);
    expect(log.map((a) => a.webhook_timestamp)).toEqual(
      attempts.map((a) => Number(a.headers["webhook-timestamp"])),
    );
    expect(sim.control.stats().webhooks).toMatchObject({
      sent: 2,
      delivered: 1,
      errored: 1,
      retried: 1,
      failed: 0,
    });
  });

  it("gives up after webhook_max_attempts, and retries network errors too", async () => {
    receiver = await startReceiver(() => 503);
    sim = await startTestSim({ webhook_max_attempts: 4, run_duration_ms: 5, webhook_retry_jitter: 0 });
    await runWithWebhook(sim, receiver.url);
    const attempts = await receiver.waitFor(4);
    const current = sim;
    await until(() => current.control.stats().webhooks.failed === 1);
    const log = sim.control.webhooks();
    // Doubling from 5 s, × 0.001: 5, 10, 20 ms.
    expect(log.map((a) => a.next_attempt_in_ms)).toEqual([5, 10, 20, null]);
    const gaps = attempts.slice(1).map((a, i) => a.atMs - (attempts[i]?.atMs ?? 0));
    gaps.forEach((gap, i) => {
      expect(gap).toBeGreaterThanOrEqual(5 * 2 ** i - 1);
    });
    expect(new Set(attempts.map((a) => a.headers["webhook-id"])).size).toBe(1);
    expect(log.at(-1)?.outcome).toBe("http_error");
    expect(sim.control.stats().webhooks).toMatchObject({
      sent: 4,
      delivered: 0,
      retried: 3,
      failed: 1,
      pending: 0,
    });

    // Nothing listens on a closed receiver's port: network errors, retried the same way.
    const closedUrl = receiver.url;
    await receiver.close();
    receiver = undefined;
    sim.control.reset();
    await runWithWebhook(sim, closedUrl);
    await until(() => current.control.stats().webhooks.failed === 1);
    expect(sim.control.webhooks().map((a) => a.outcome)).toEqual(Array(4).fill("network_error"));
  });
});

/** A receiver that answers each request after `holdMs` and counts how many it holds at once. */
async function startSlowReceiver(holdMs: number, status = 200) {
  let open = 0;
  let peak = 0;
  let received = 0;
  let arrived = 0;
  const server = createServer((req, res) => {
    arrived++;
    open++;
    peak = Math.max(peak, open);
    req.resume();
    req.on("end", () => {
      setTimeout(() => {
        open--;
        received++;
        res.writeHead(status).end();
      }, holdMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    peak: () => peak,
    /** Requests that reached the server, answered or not. */
    arrived: () => arrived,
    received: () => received,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** `count` runs added to a group in one call, so they end within a few ms of each other. */
async function groupWithWebhooks(handle: SimHandle, urls: string[], count: number): Promise<string[]> {
  const client = sdk(handle);
  const group = await client.taskGroup.create({});
  const added = await client.taskGroup.addRuns(group.taskgroup_id, {
    inputs: Array.from({ length: count }, (_, i) => ({
      input: `row ${i}`,
      processor: "lite",
      webhook: { url: urls[i % urls.length] ?? "", event_types: ["task_run.status"] },
    })),
    betas: ["webhook-2025-08-12"],
  });
  return added.run_ids;
}

describe("a burst of completions", () => {
  it("holds at most webhook_concurrency attempts open to one receiver; each receiver has its own", async () => {
    const slow = await startSlowReceiver(40);
    const other = await startSlowReceiver(40);
    try {
      sim = await startTestSim({ run_duration_ms: 5, webhook_concurrency: 3 });
      await groupWithWebhooks(sim, [slow.url, other.url], 60);
      const current = sim;
      await until(() => current.control.stats().webhooks.delivered === 60, 20_000);
      expect(slow.received()).toBe(30);
      expect(other.received()).toBe(30);
      // 30 webhooks held 40 ms each, three at a time, per receiver: never more, and the limit is used.
      expect(slow.peak()).toBe(3);
      expect(other.peak()).toBe(3);
      expect(sim.control.stats().webhooks).toMatchObject({ sent: 60, pending: 0, in_flight: 0 });
    } finally {
      await slow.close();
      await other.close();
    }
  });

  it("queued attempts count as pending; a reset drops the queue", async () => {
    const slow = await startSlowReceiver(200);
    try {
      sim = await startTestSim({ run_duration_ms: 5, webhook_concurrency: 2 });
      await groupWithWebhooks(sim, [slow.url], 10);
      const current = sim;
      await until(() => {
        const { in_flight, pending } = current.control.stats().webhooks;
        return in_flight === 2 && pending === 8;
      });
      sim.control.reset();
      await sleep(500);
      // The 8 queued were never sent (at most the 2 aborted ones reached the receiver), and the
      // aborted attempts freed nothing of the new state.
      expect(slow.arrived()).toBeLessThanOrEqual(2);
      expect(sim.control.stats().webhooks).toMatchObject({ sent: 0, pending: 0, in_flight: 0 });
      // After the reset the receiver gets its full share of slots again.
      await groupWithWebhooks(sim, [slow.url], 2);
      await until(() => current.control.stats().webhooks.delivered === 2, 5_000);
    } finally {
      await slow.close();
    }
  });

  it("spreads retries by ±webhook_retry_jitter around the doubling, the same for the same seed", async () => {
    const waits = async (seed: number) => {
      const failing = await startReceiver(() => 503);
      try {
        const handle = await startTestSim({ seed, run_duration_ms: 5, webhook_max_attempts: 3 });
        try {
          const ids = await groupWithWebhooks(handle, [failing.url], 20);
          await until(() => handle.control.stats().webhooks.failed === 20, 10_000);
          return ids.map((id) => handle.control.webhooks({ runId: id }).map((a) => a.next_attempt_in_ms));
        } finally {
          await handle.close();
        }
      } finally {
        await failing.close();
      }
    };
    const first = await waits(7);
    for (const [retry1, retry2, last] of first) {
      // 5 s and 10 s × 0.001, each within ±20 %.
      expect(retry1).toBeGreaterThanOrEqual(4);
      expect(retry1).toBeLessThanOrEqual(6);
      expect(retry2).toBeGreaterThanOrEqual(8);
      expect(retry2).toBeLessThanOrEqual(12);
      expect(last).toBeNull();
    }
    expect(new Set(first.map((w) => w[0])).size).toBeGreaterThan(10);
    expect(await waits(7)).toEqual(first);
    expect(await waits(8)).not.toEqual(first);
  });
});
