// End-to-end harness: the real local stack (simulator + wrangler dev on local D1) on free loopback
// ports, a callback receiver that verifies every delivery with standardwebhooks, and a client that
// behaves like a careful user (Idempotency-Key on every create, retried on connection errors).
import { appendFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CallbackReceiver, startCallbackReceiver } from "../../../scripts/callback-receiver.ts";
import { createApiKey, freePort, type LocalStack, startLocalStack } from "../../../scripts/local-stack.ts";

export const ADMIN_TOKEN = "e2e-admin-token";

export interface E2EStack {
  stack: LocalStack;
  /** The relay's local D1 (wrangler --persist-to), for a test that writes rows no API makes yet. */
  persistDir: string;
  receiver: CallbackReceiver;
  key: { id: string; key: string; signing_secret: string };
  /** Every response status the client saw, to assert that no request got a 5xx. */
  statuses: number[];
  /** Requests that found no relay listening (it was down) and were sent again. */
  connectionErrors: number;
  /** `replayed`: the relay answered with an earlier run for this Idempotency-Key (idempotent-replayed). */
  createRun(
    body: Record<string, unknown>,
    idempotencyKey: string,
  ): Promise<{ id: string; status: string; replayed: boolean }>;
  get<T>(path: string): Promise<T>;
  simConfig(patch: Record<string, unknown>): Promise<void>;
  simStats(): Promise<SimStats>;
  /** Ticks the scheduled handler until `done()` holds, or fails after `timeoutMs`. */
  driveUntil(done: () => Promise<boolean>, timeoutMs: number, tickEveryMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export interface SimStats {
  endpoints: Record<string, number>;
  /** Calls per endpoint by the status answered. */
  statuses: Record<string, Record<string, number>>;
  runs: { created: number; completed: number; failed: number };
  webhooks: { sent: number; dropped: number; duplicated: number; delivered: number };
}

export interface RunView {
  id: string;
  status: string;
  result_available: boolean;
  callback: { url: string } | null;
}

const TERMINAL = new Set(["completed", "failed", "cancelled", "rejected", "expired"]);
export const isTerminal = (status: string) => TERMINAL.has(status);

export async function startE2EStack(options: {
  timeScale: number;
  relayVars?: Record<string, string>;
  simEnv?: Record<string, string>;
}): Promise<E2EStack> {
  const persistDir = await mkdtemp(join(tmpdir(), "taskrelay-e2e-"));
  const output: string[] = [];
  const stack = await startLocalStack({
    port: await freePort(),
    simPort: await freePort(),
    adminToken: ADMIN_TOKEN,
    webhookSecret: "e2e-webhook-secret",
    timeScale: options.timeScale,
    persistDir,
    simEnv: { SIM_SEED: "7", ...options.simEnv },
    relayVars: options.relayVars ?? {},
    onOutput: (line) => {
      // E2E_OUTPUT_FILE keeps every line of the children (the failure message shows the last 40).
      if (process.env.E2E_OUTPUT_FILE) appendFileSync(process.env.E2E_OUTPUT_FILE, `${line}\n`);
      output.push(line);
      if (output.length > 2000) output.shift();
    },
  });
  const key = await createApiKey(stack.relayUrl, ADMIN_TOKEN, "e2e");
  const receiver = await startCallbackReceiver({ secrets: [key.signing_secret] });
  const statuses: number[] = [];
  const counters = { connectionErrors: 0 };
  const auth = { authorization: `Bearer ${key.key}` };

  const request = async (
    path: string,
    init: RequestInit = {},
  ): Promise<{ status: number; text: string; headers: Headers }> => {
    // A careful client: a connection cut or refused (the relay restarting) is retried, never a lost request.
    for (let attempt = 0; ; attempt++) {
      try {
        const response = await fetch(`${stack.relayUrl}${path}`, {
          ...init,
          headers: { ...auth, ...init.headers },
        });
        const text = await response.text();
        statuses.push(response.status);
        return { status: response.status, text, headers: response.headers };
      } catch (error) {
        counters.connectionErrors++;
        if (attempt >= 100) throw error;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  };

  return {
    stack,
    persistDir,
    receiver,
    key,
    statuses,
    get connectionErrors() {
      return counters.connectionErrors;
    },
    createRun: async (body, idempotencyKey) => {
      const response = await request("/v1/runs", {
        method: "POST",
        headers: { "content-type": "application/json", "idempotency-key": idempotencyKey },
        body: JSON.stringify(body),
      });
      if (response.status !== 202) throw new Error(`create answered ${response.status}: ${response.text}`);
      const run = JSON.parse(response.text) as { id: string; status: string };
      return { ...run, replayed: response.headers.get("idempotent-replayed") === "true" };
    },
    get: async <T>(path: string) => {
      const response = await request(path);
      if (response.status !== 200)
        throw new Error(`GET ${path} answered ${response.status}: ${response.text}`);
      return JSON.parse(response.text) as T;
    },
    simConfig: async (patch) => {
      const response = await fetch(`${stack.simUrl}/_sim/config`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(patch),
      });
      if (!response.ok) throw new Error(`sim config refused: ${await response.text()}`);
    },
    simStats: async () => (await (await fetch(`${stack.simUrl}/_sim/stats`)).json()) as SimStats,
    driveUntil: async (done, timeoutMs, tickEveryMs = 150) => {
      const deadline = Date.now() + timeoutMs;
      while (!(await done())) {
        if (Date.now() > deadline) {
          throw new Error(
            `not done within ${timeoutMs} ms; last relay output:\n${output.slice(-40).join("\n")}`,
          );
        }
        await stack.tick().catch(() => undefined);
        await new Promise((r) => setTimeout(r, tickEveryMs));
      }
    },
    stop: async () => {
      await receiver.close();
      await stack.stop();
      await rm(persistDir, { recursive: true, force: true });
    },
  };
}

/** Every run of the key, through the paginated list API. */
export async function listAllRuns(e2e: E2EStack): Promise<RunView[]> {
  const runs: RunView[] = [];
  let cursor: string | null = null;
  do {
    const page: { data: RunView[]; next_cursor: string | null } = await e2e.get(
      `/v1/runs?limit=100${cursor ? `&cursor=${cursor}` : ""}`,
    );
    runs.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor);
  return runs;
}

/** Runs `tasks` with at most `concurrency` in flight. */
export async function inParallel<T>(
  items: T[],
  concurrency: number,
  task: (item: T, index: number) => Promise<void>,
) {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) {
        const index = next++;
        await task(items[index] as T, index);
      }
    }),
  );
}
