// The local stack as a library: the simulator and the relay (`wrangler dev` on local D1) wired to
// each other, with the migrations applied. `npm start` (scripts/dev.ts), the end-to-end tests and the
// benchmark all start it through here, so they run exactly what a newcomer runs.
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dirname, "..");
const WRANGLER = join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js");
const SIM_MAIN = join(ROOT, "sim", "main.ts");

export interface StackOptions {
  port: number;
  simPort: number;
  adminToken: string;
  webhookSecret: string;
  /** The simulator's SIM_TIME_SCALE; the relay's waits (POLL_TIME_SCALE) follow it. */
  timeScale: number;
  /** Where local D1 lives (wrangler --persist-to). */
  persistDir: string;
  /** SIM_* variables passed to the simulator as they are. */
  simEnv?: Record<string, string>;
  /** A real Parallel instead of the simulator. */
  parallel?: { apiKey: string; baseUrl: string };
  /** Further relay settings, e.g. SWEEP_BATCH_SIZE. */
  relayVars?: Record<string, string>;
  /** Receives every output line of the children, prefixed with their name. */
  onOutput?: (line: string) => void;
}

export interface LocalStack {
  relayUrl: string;
  simUrl: string | null;
  /** Runs the scheduled handler once, as a Cron Trigger would. */
  tick(): Promise<void>;
  /** Kills the relay (SIGKILL: no graceful anything), as a crash would. */
  killRelay(): Promise<void>;
  startRelay(): Promise<void>;
  stop(): Promise<void>;
  /** Process group ids (each child is started detached, leading its own group), for CPU accounting. */
  processGroups(): { relay: number | null; sim: number | null };
}

/** Fails with a clear message when the port is taken, instead of a child that hangs or dies later. */
export async function assertPortFree(port: number, setting: string): Promise<void> {
  await new Promise<void>((resolvePort, reject) => {
    const probe = createServer();
    probe.once("error", (error: NodeJS.ErrnoException) => {
      reject(
        new Error(
          error.code === "EADDRINUSE"
            ? `Port ${port} on 127.0.0.1 is already in use. Stop what runs there, or choose another port with ${setting}=<port>.`
            : `Cannot listen on 127.0.0.1:${port} (${setting}): ${error.message}`,
        ),
      );
    });
    probe.listen(port, "127.0.0.1", () => probe.close(() => resolvePort()));
  });
}

/** A free port on 127.0.0.1, for tests that must not collide with a running `npm start`. */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => resolvePort(port));
    });
  });
}

/**
 * wrangler dev's devtools port: without this, each wrangler probes 9229, 9230, … and takes the
 * first free one, so two started at the same moment (parallel suites) can pick the same port and
 * the later one exits 1 ("Address already in use (socket "direct:1:default")"). Port 0: the system
 * gives each its own.
 */
const INSPECTOR_ANY_PORT = ["--inspector-port", "0"];

/** The last lines each child printed, for the error when it exits before it is ready. */
const outputTails = new WeakMap<ChildProcess, string[]>();
const TAIL_LINES = 30;

function spawnChild(
  name: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  onOutput?: (line: string) => void,
): ChildProcess {
  // Own process group: wrangler starts workerd children, and stopping the group stops them all.
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const tail: string[] = [];
  outputTails.set(child, tail);
  for (const stream of [child.stdout, child.stderr]) {
    let buffered = "";
    stream?.on("data", (chunk: Buffer) => {
      buffered += chunk.toString("utf8");
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      for (const line of lines) {
        tail.push(line);
        if (tail.length > TAIL_LINES) tail.shift();
        onOutput?.(`[${name}] ${line}`);
      }
    });
  }
  return child;
}

async function stopChild(child: ChildProcess | null, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolveExit) => child.once("exit", () => resolveExit()));
  const killGroup = (sig: NodeJS.Signals) => {
    try {
      process.kill(-(child.pid as number), sig);
    } catch {
      // already gone
    }
  };
  killGroup(signal);
  const timer = setTimeout(() => killGroup("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
  // workerd children may outlive wrangler by a moment; make sure the group is gone.
  killGroup("SIGKILL");
}

async function waitForHttp(
  url: string,
  child: ChildProcess,
  what: string,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      const said = (outputTails.get(child) ?? []).join("\n").trim();
      throw new Error(
        `${what} exited with code ${child.exitCode} before it was ready.${said ? ` Its last output:\n${said}` : ""}`,
      );
    }
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      if (response.ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} did not answer ${url} within ${timeoutMs / 1000} s.`);
}

async function run(args: string[], env: NodeJS.ProcessEnv, what: string): Promise<void> {
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (c: Buffer) => {
    output += c.toString();
  });
  child.stderr.on("data", (c: Buffer) => {
    output += c.toString();
  });
  const code = await new Promise<number | null>((r) => child.once("exit", (exitCode) => r(exitCode)));
  if (code !== 0) throw new Error(`${what} failed (exit ${code}):\n${output}`);
}

export async function startLocalStack(options: StackOptions): Promise<LocalStack> {
  const relayUrl = `http://127.0.0.1:${options.port}`;
  const useSim = !options.parallel;
  await assertPortFree(options.port, "PORT");
  if (useSim) await assertPortFree(options.simPort, "SIM_PORT");

  const quietEnv = { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" };
  await run(
    [WRANGLER, "d1", "migrations", "apply", "taskrelay", "--local", "--persist-to", options.persistDir],
    quietEnv,
    "Applying the local D1 migrations",
  );

  let sim: ChildProcess | null = null;
  let simUrl: string | null = null;
  const simApiKey = options.simEnv?.SIM_API_KEY ?? "sim-key";
  if (useSim) {
    simUrl = `http://127.0.0.1:${options.simPort}`;
    sim = spawnChild(
      "sim",
      [SIM_MAIN],
      {
        ...process.env,
        ...options.simEnv,
        SIM_PORT: String(options.simPort),
        SIM_HOST: "127.0.0.1",
        SIM_API_KEY: simApiKey,
        SIM_WEBHOOK_SECRET: options.webhookSecret,
        SIM_TIME_SCALE: String(options.timeScale),
      },
      options.onOutput,
    );
    await waitForHttp(`${simUrl}/_sim/stats`, sim, "The simulator");
  }

  const vars: Record<string, string> = {
    PARALLEL_BASE_URL: options.parallel?.baseUrl ?? (simUrl as string),
    PARALLEL_API_KEY: options.parallel?.apiKey ?? simApiKey,
    PARALLEL_WEBHOOK_SECRET: options.webhookSecret,
    PUBLIC_BASE_URL: relayUrl,
    ADMIN_TOKEN: options.adminToken,
    ALLOW_HTTP_CALLBACKS: "true",
    POLL_TIME_SCALE: String(useSim ? options.timeScale : 1),
    ...options.relayVars,
  };
  const relayArgs = [
    WRANGLER,
    "dev",
    "--ip",
    "127.0.0.1",
    "--port",
    String(options.port),
    "--persist-to",
    options.persistDir,
    "--test-scheduled",
    ...INSPECTOR_ANY_PORT,
    "--show-interactive-dev-session=false",
    "--live-reload=false",
    ...Object.entries(vars).flatMap(([name, value]) => ["--var", `${name}:${value}`]),
  ];
  let relay: ChildProcess | null = null;

  const startRelay = async () => {
    relay = spawnChild("relay", relayArgs, quietEnv, options.onOutput);
    await waitForHttp(`${relayUrl}/healthz`, relay, "The relay (wrangler dev)");
  };

  try {
    await startRelay();
  } catch (error) {
    await stopChild(sim);
    await stopChild(relay);
    throw error;
  }

  return {
    relayUrl,
    simUrl,
    tick: async () => {
      const response = await fetch(`${relayUrl}/__scheduled?cron=${encodeURIComponent("* * * * *")}`);
      await response.text();
    },
    killRelay: () => stopChild(relay, "SIGKILL"),
    startRelay,
    processGroups: () => ({ relay: relay?.pid ?? null, sim: sim?.pid ?? null }),
    stop: async () => {
      await stopChild(relay);
      await stopChild(sim);
    },
  };
}

/** Runs SQL on the local D1 database (the one the relay uses), e.g. to load it for a benchmark. */
export async function executeLocalSql(persistDir: string, sql: string): Promise<void> {
  await run(
    [WRANGLER, "d1", "execute", "taskrelay", "--local", "--persist-to", persistDir, "--command", sql],
    { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" },
    "Executing SQL on the local D1 database",
  );
}

/**
 * The signing secrets of the key a delivery was sent for, read from the local D1 database (the one
 * `npm start` runs on) by the delivery's id, its webhook-id; null when there is no such delivery.
 * Only the local stack's receiver asks: the secrets stay in the developer's own database and never
 * cross the relay's API, which shows a signing secret once, when the key is made. Read with
 * node:sqlite from the file wrangler keeps (`wrangler d1 execute` would take 2-10 s a look-up, too
 * close to a delivery's 15 s timeout on a busy machine).
 */
export async function localSigningSecrets(
  persistDir: string,
  deliveryId: string,
): Promise<{ keyId: string; secrets: string[] } | null> {
  const { DatabaseSync } = await loadSqlite();
  // Where wrangler's local D1 keeps each database: one SQLite file per database, beside metadata.sqlite.
  const dir = join(persistDir, "v3", "d1", "miniflare-D1DatabaseObject");
  const files = readdirSync(dir).filter((name) => name.endsWith(".sqlite") && name !== "metadata.sqlite");
  for (const file of files) {
    const db = new DatabaseSync(join(dir, file), { readOnly: true });
    try {
      const row = db
        .prepare(
          `SELECT k.id, k.signing_secret, k.previous_signing_secret FROM deliveries d
             JOIN api_keys k ON k.id = d.api_key_id WHERE d.id = ?`,
        )
        .get(deliveryId) as
        | { id: string; signing_secret: string; previous_signing_secret: string | null }
        | undefined;
      if (row) {
        return {
          keyId: row.id,
          secrets: [
            row.signing_secret,
            ...(row.previous_signing_secret ? [row.previous_signing_secret] : []),
          ],
        };
      }
    } catch (error) {
      // Another database, without taskrelay's tables: look further.
      if (!String(error).includes("no such table")) throw error;
    } finally {
      db.close();
    }
  }
  return null;
}

/** node:sqlite, without the ExperimentalWarning Node 22 prints when it is loaded (once per process). */
export async function loadSqlite(): Promise<typeof import("node:sqlite")> {
  const emitWarning = process.emitWarning;
  process.emitWarning = () => undefined;
  try {
    return await import("node:sqlite");
  } finally {
    process.emitWarning = emitWarning;
  }
}

/** A Worker under `wrangler dev` from its own configuration (the benchmark's bare Worker). */
export async function startWranglerDev(
  configPath: string,
  port: number,
  onOutput?: (line: string) => void,
): Promise<{ url: string; processGroup: number | null; stop(): Promise<void> }> {
  await assertPortFree(port, "port");
  // Its own local state: two of these in one checkout would otherwise share .wrangler/state (seen
  // as SQLITE_BUSY at startup).
  const persistDir = await mkdtemp(join(tmpdir(), "taskrelay-bare-"));
  const child = spawnChild(
    "bare",
    [
      WRANGLER,
      "dev",
      "--config",
      configPath,
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--persist-to",
      persistDir,
      ...INSPECTOR_ANY_PORT,
      "--show-interactive-dev-session=false",
    ],
    { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" },
    onOutput,
  );
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    await stopChild(child);
    await rm(persistDir, { recursive: true, force: true });
  };
  try {
    await waitForHttp(url, child, "The bare Worker");
  } catch (error) {
    await stop();
    throw error;
  }
  return { url, processGroup: child.pid ?? null, stop };
}

/** Mints an API key through the admin API. */
export async function createApiKey(
  relayUrl: string,
  adminToken: string,
  name: string,
): Promise<{ id: string; key: string; signing_secret: string }> {
  const response = await fetch(`${relayUrl}/v1/keys`, {
    method: "POST",
    headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ name }),
  });
  if (response.status !== 201)
    throw new Error(`Creating an API key failed: ${response.status} ${await response.text()}`);
  return (await response.json()) as { id: string; key: string; signing_secret: string };
}
