// Shared test harness: a simulator on an ephemeral port, the official SDK pointed at it, and a
// small webhook receiver on 127.0.0.1:0.

import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import Parallel from "parallel-web";
import { expect } from "vitest";
import { type SimHandle, startSim } from "../../../sim/server.ts";

export const API_KEY = "test-key";

/** A sim on port 0 with fast time: 0.001 turns a 60 s run into 60 ms. */
export function startTestSim(settings: Record<string, unknown> = {}): Promise<SimHandle> {
  return startSim({ port: 0, api_key: API_KEY, time_scale: 0.001, ...settings });
}

export function sdk(sim: SimHandle, options: { apiKey?: string; maxRetries?: number } = {}): Parallel {
  return new Parallel({
    apiKey: options.apiKey ?? API_KEY,
    baseURL: sim.url,
    maxRetries: options.maxRetries ?? 0,
    timeout: 10_000,
  });
}

/** Raw HTTP against the sim, for what the SDK hides (headers, exact bodies). */
export async function call(
  sim: SimHandle,
  method: string,
  path: string,
  options: { body?: unknown; headers?: Record<string, string>; apiKey?: string | null } = {},
): Promise<{ status: number; headers: Headers; json: unknown; text: string }> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.apiKey !== null) headers["x-api-key"] = options.apiKey ?? API_KEY;
  if (options.body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(`${sim.url}${path}`, {
    method,
    headers,
    body:
      options.body === undefined
        ? undefined
        : typeof options.body === "string"
          ? options.body
          : JSON.stringify(options.body),
  });
  const text = await response.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    // Not JSON (SSE); callers read `text`.
  }
  return { status: response.status, headers: response.headers, json, text };
}

export interface ReceivedWebhook {
  headers: IncomingHttpHeaders;
  body: string;
  atMs: number;
}

export interface Receiver {
  url: string;
  received: ReceivedWebhook[];
  /** Resolves once `count` requests have arrived; rejects after `timeoutMs`. */
  waitFor(count: number, timeoutMs?: number): Promise<ReceivedWebhook[]>;
  close(): Promise<void>;
}

/** `status(n)` picks the answer to the n-th (0-based) request. */
export async function startReceiver(status: (n: number) => number = () => 200): Promise<Receiver> {
  const received: ReceivedWebhook[] = [];
  const waiters: { count: number; resolve: () => void }[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const n = received.length;
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8"), atMs: Date.now() });
      res.writeHead(status(n)).end();
      for (const waiter of [...waiters]) {
        if (received.length >= waiter.count) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve();
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    received,
    waitFor(count, timeoutMs = 5_000) {
      if (received.length >= count) return Promise.resolve(received);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`expected ${count} webhooks, got ${received.length}`)),
          timeoutMs,
        );
        waiters.push({
          count,
          resolve: () => {
            clearTimeout(timer);
            resolve(received);
          },
        });
      });
    },
    close() {
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` every 5 ms until it returns a value, or fails after `timeoutMs`. */
export async function until<T>(check: () => T | undefined | null | false, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(5);
  }
}

export const GDP_SCHEMA = {
  type: "object",
  properties: { gdp: { type: "string", description: "GDP in USD" } },
  required: ["gdp"],
  additionalProperties: false,
} as const;

/** The call's rejection, checked to be of the SDK's error class for the status. */
export async function expectRejects<T extends abstract new (...args: never[]) => Error>(
  promise: Promise<unknown>,
  errorClass: T,
): Promise<InstanceType<T>> {
  const error = await promise.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(errorClass);
  return error as InstanceType<T>;
}
