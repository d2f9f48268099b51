// The simulator as a library: startSim() for tests, the dev launcher and the benchmark
// (in-process), main.ts for `npm run sim` (a child process).

import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createAdaptorServer } from "@hono/node-server";
import { Hono } from "hono";
import { parallelApi } from "./api.ts";
import { applyConfigPatch, DEFAULT_CONFIG, type SimConfig } from "./config.ts";
import type { SimContext } from "./context.ts";
import { controlApi, createControl, type SimControl } from "./control.ts";
import { errorResponse, MESSAGES } from "./errors.ts";
import { Faults } from "./faults.ts";
import { GroupStore } from "./groups.ts";
import { taskGroupApi } from "./groups-api.ts";
import { SlidingWindowLimiter } from "./rate-limit.ts";
import { RunStore, toTaskRun } from "./runs.ts";
import { CallStats } from "./stats.ts";
import { isoNow } from "./time.ts";
import { WebhookDispatcher } from "./webhooks.ts";

export interface Simulator {
  /** The Hono app: serve it, or call app.fetch directly. */
  app: Hono;
  control: SimControl;
  /** Stops every timer, stream, blocked call and delivery. */
  shutdown(): void;
}

/** Builds a simulator without listening. `settings` uses the lower-case names of POST /_sim/config. */
export function createSimulator(settings: unknown = {}): Simulator {
  let config = applyConfigPatch({ ...DEFAULT_CONFIG }, settings);
  const getConfig = (): SimConfig => config;
  const faults = new Faults(getConfig);
  const webhooks = new WebhookDispatcher(getConfig, faults);
  const groups = new GroupStore();
  const runs = new RunStore({
    config: getConfig,
    faults,
    onStatusChange: (run, previous) => groups.runChanged(run, previous),
    onTerminal(run) {
      const webhook = run.input.webhook;
      if (!webhook) return;
      const types = webhook.event_types ?? [];
      // Only task_run.status exists; an empty list (the OAS default) is taken to mean it too.
      if (types.length === 0 || types.includes("task_run.status"))
        webhooks.dispatch(toTaskRun(run), webhook.url, run.seq);
    },
  });
  const sim: SimContext = {
    config: getConfig,
    setConfig(next) {
      config = next;
    },
    runs,
    groups,
    webhooks,
    faults,
    stats: new CallStats(),
    limiter: new SlidingWindowLimiter(),
    openStreams: new Set(),
    waiters: new Set(),
    startedAt: isoNow(),
  };
  const control = createControl(sim);

  const app = new Hono();
  app.route("/", parallelApi(sim));
  app.route("/", taskGroupApi(sim));
  app.route("/_sim", controlApi(control));
  app.notFound(() => {
    sim.stats.unmatched();
    return errorResponse(404, MESSAGES.notFound);
  });
  app.onError((error) => {
    console.error("sim: unhandled error", error);
    return errorResponse(500, MESSAGES.internal);
  });

  return {
    app,
    control,
    shutdown() {
      for (const close of [...sim.openStreams]) close();
      for (const release of [...sim.waiters]) release();
      webhooks.close();
      runs.clear();
      groups.clear();
    },
  };
}

export interface SimHandle {
  /** e.g. "http://127.0.0.1:8788" (no trailing slash): the SDK's baseURL. */
  url: string;
  port: number;
  host: string;
  control: SimControl;
  /** Stops the simulator and closes the listening socket and every open connection. */
  close(): Promise<void>;
}

/** Starts a simulator listening on settings.host:settings.port (defaults 127.0.0.1:8788; port 0 = any free). */
export async function startSim(settings: unknown = {}): Promise<SimHandle> {
  const simulator = createSimulator(settings);
  const { host, port } = simulator.control.config();
  // createAdaptorServer defaults to node:http's createServer, so this is an http.Server.
  const server = createAdaptorServer({ fetch: simulator.app.fetch }) as Server;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const urlHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
  let closing: Promise<void> | null = null;
  return {
    url: `http://${urlHost}:${address.port}`,
    port: address.port,
    host: address.address,
    control: simulator.control,
    close() {
      closing ??= new Promise<void>((resolve) => {
        simulator.shutdown();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
