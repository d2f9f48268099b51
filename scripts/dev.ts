// `npm start`: the whole local stack with one command, offline. Applies the local D1 migrations,
// starts the simulator (unless PARALLEL_API_KEY names a real Parallel key) and the relay, fires the
// scheduled handler every TICK_SECONDS as Cron Triggers would, runs a callback receiver that verifies
// and prints deliveries (of every key made on this stack: it reads a key's signing secret from the
// local D1 database), and prints a ready API key and a curl to try.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startCallbackReceiver } from "./callback-receiver.ts";
import { assertPortFree, createApiKey, localSigningSecrets, ROOT, startLocalStack } from "./local-stack.ts";

const env = process.env;
const port = Number(env.PORT ?? 8787);
const simPort = Number(env.SIM_PORT ?? 8788);
const receiverPort = Number(env.RECEIVER_PORT ?? 8789);
const adminToken = env.ADMIN_TOKEN ?? "dev-admin-token";
const webhookSecret = env.PARALLEL_WEBHOOK_SECRET ?? "dev-webhook-secret";
const timeScale = Number(env.SIM_TIME_SCALE ?? 0.01);
const realParallel = env.PARALLEL_API_KEY
  ? { apiKey: env.PARALLEL_API_KEY, baseUrl: env.PARALLEL_BASE_URL ?? "https://api.parallel.ai" }
  : undefined;
// A minute of (simulated) time between ticks: with the simulator at 0.01 that is a tick a second.
const tickSeconds = Number(env.TICK_SECONDS ?? Math.max(1, Math.round(60 * (realParallel ? 1 : timeScale))));
// Local D1 and the dev key live here; LOCAL_STATE_DIR lets a test run beside a developer's stack.
const stateDir = env.LOCAL_STATE_DIR ?? join(ROOT, ".wrangler");
const devKeyFile = join(stateDir, "taskrelay-dev-key.json");
const persistDir = join(stateDir, "state");

for (const [name, value] of Object.entries({
  PORT: port,
  SIM_PORT: simPort,
  RECEIVER_PORT: receiverPort,
  SIM_TIME_SCALE: timeScale,
  TICK_SECONDS: tickSeconds,
})) {
  if (!Number.isFinite(value) || value <= 0) {
    console.error(`${name} must be a positive number.`);
    process.exit(2);
  }
}

/** Lines worth showing from the children: events, warnings and errors, not idle cron ticks. */
function show(line: string) {
  if (
    /Request\.cf|getaddrinfo|ENOTFOUND|GetAddrInfoReqWrap|callbackTrampoline|__scheduled|update available/.test(
      line,
    )
  )
    return;
  if (isIdleTick(line)) return;
  if (line.includes('"event":"http.request"') && line.includes('"path":"/healthz"')) return;
  console.log(line);
}

/** A tick that changed nothing: shown, one a second, they would bury everything else. */
function isIdleTick(line: string): boolean {
  if (!line.startsWith('[relay] {"level":"info","event":"cron.tick"')) return false;
  try {
    return (JSON.parse(line.slice("[relay] ".length)) as { d1_rows_written?: number }).d1_rows_written === 0;
  } catch {
    return false;
  }
}

async function devKey(relayUrl: string) {
  try {
    const saved = JSON.parse(await readFile(devKeyFile, "utf8")) as {
      id: string;
      key: string;
      signing_secret: string;
    };
    const check = await fetch(`${relayUrl}/v1/runs?limit=1`, {
      headers: { authorization: `Bearer ${saved.key}` },
    });
    if (check.ok) return saved;
  } catch {
    // no saved key, or a fresh database: mint one
  }
  const created = await createApiKey(relayUrl, adminToken, "local dev");
  await mkdir(stateDir, { recursive: true });
  await writeFile(devKeyFile, JSON.stringify(created, null, 2), { mode: 0o600 });
  return created;
}

async function main() {
  await assertPortFree(receiverPort, "RECEIVER_PORT");
  const stack = await startLocalStack({
    port,
    simPort,
    adminToken,
    webhookSecret,
    timeScale,
    persistDir,
    simEnv: Object.fromEntries(
      Object.entries(env).filter(([name]) => name.startsWith("SIM_")) as Array<[string, string]>,
    ),
    ...(realParallel ? { parallel: realParallel } : {}),
    relayVars: env.PUBLIC_BASE_URL ? { PUBLIC_BASE_URL: env.PUBLIC_BASE_URL } : {},
    onOutput: show,
  });
  const key = await devKey(stack.relayUrl).catch(async (error: unknown) => {
    await stack.stop();
    throw error;
  });
  const receiver = await startCallbackReceiver({
    port: receiverPort,
    secrets: [key.signing_secret],
    // Keys minted with the admin token (as the README does) verify too: their secret is in local D1.
    learnSecret: (webhookId) => localSigningSecrets(persistDir, webhookId),
    onDelivery: (d) =>
      console.log(
        d.verified
          ? `[receiver] verified ${d.body?.type} for ${d.body?.data.run.id} (webhook-id ${d.webhookId}, attempt ${d.attempt})`
          : `[receiver] UNVERIFIED callback (webhook-id ${d.webhookId || "none"}, attempt ${d.attempt}), answered 401: ${d.reason}`,
      ),
  });

  let ticking = false;
  const timer = setInterval(() => {
    if (ticking) return;
    ticking = true;
    stack
      .tick()
      .catch((error) => console.error(`[tick] ${String(error)}`))
      .finally(() => {
        ticking = false;
      });
  }, tickSeconds * 1000);

  const body = JSON.stringify({
    processor: "base",
    input: "What was the GDP of France in 2023?",
    callback: { url: receiver.url },
  });
  console.log(`
taskrelay is running locally.

  relay        ${stack.relayUrl}   (/openapi.json, /docs, /dashboard)
  simulator    ${stack.simUrl ?? `none: talking to ${realParallel?.baseUrl}`}${stack.simUrl ? `   (SIM_TIME_SCALE=${timeScale}, /_sim/stats)` : ""}
  receiver     ${receiver.url}   (verifies and prints the callbacks of every key made here)
  cron tick    every ${tickSeconds} s (TICK_SECONDS)
  admin token  ${adminToken}   (ADMIN_TOKEN)
  webhook secret ${webhookSecret}   (PARALLEL_WEBHOOK_SECRET)
  API key      ${key.key}
  signing secret ${key.signing_secret}

Start a run whose result comes back to the receiver:

  curl -s ${stack.relayUrl}/v1/runs \\
    -H 'authorization: Bearer ${key.key}' \\
    -H 'content-type: application/json' \\
    -d '${body}'

Ctrl-C stops everything.
`);
  if (realParallel && !env.PUBLIC_BASE_URL) {
    console.log(
      "Note: Parallel cannot reach 127.0.0.1, so results arrive through the poller. Set PUBLIC_BASE_URL to a tunnel for webhooks.\n",
    );
  }

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: stopping…`);
    clearInterval(timer);
    await Promise.allSettled([receiver.close(), stack.stop()]);
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error));
  process.exit(1);
});
