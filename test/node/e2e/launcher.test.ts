// `npm start` as a newcomer runs it: the launcher process on free ports prints what it promises, the
// printed curl creates a run whose callback arrives, the README's shell examples run as written
// against it (so the README cannot rot), a failed delivery says what happened in words measured on
// workerd's real errors, Ctrl-C stops every process it started, and a port in use is a clear error
// instead of a hang. One launched stack serves the tests of the first block, in order.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer as createHttpServer } from "node:http";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, ROOT } from "../../../scripts/local-stack.ts";

function launch(env: Record<string, string>): { child: ChildProcess; output: () => string } {
  let output = "";
  const child = spawn(process.execPath, [join(ROOT, "scripts", "dev.ts")], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  return { child, output: () => output };
}

async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
  output: () => string,
) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen; launcher output:\n${output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const exited = (child: ChildProcess) =>
  new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once("exit", (code) => resolve(code));
  });

/** Whether anything still listens on the port. */
async function listening(port: number): Promise<boolean> {
  try {
    await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1_000) });
    return true;
  } catch {
    return false;
  }
}

/** The shell blocks of README's "Using it" section (its subsections included), in order. */
async function readmeShellBlocks(): Promise<string[]> {
  const readme = await readFile(join(ROOT, "README.md"), "utf8");
  const start = readme.indexOf("\n## Using it\n");
  const end = readme.indexOf("\n## ", start + 1);
  const section = readme.slice(start, end);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1] ?? "");
}

/** Runs a bash script to its end: exit code and everything it printed. */
function bash(
  script: string,
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn("bash", ["-c", script], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      timeout: timeoutMs,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("npm start", () => {
  const started: ChildProcess[] = [];
  let ports: { PORT: number; SIM_PORT: number; RECEIVER_PORT: number };
  let stateDir: string;
  let stack: { child: ChildProcess; output: () => string };
  let relay: string;
  let devKey: string;

  beforeAll(async () => {
    ports = { PORT: await freePort(), SIM_PORT: await freePort(), RECEIVER_PORT: await freePort() };
    // Its own local D1 and dev key, so the test never touches a developer's running stack.
    stateDir = await mkdtemp(join(tmpdir(), "taskrelay-launcher-"));
    stack = launch({
      PORT: String(ports.PORT),
      SIM_PORT: String(ports.SIM_PORT),
      RECEIVER_PORT: String(ports.RECEIVER_PORT),
      SIM_TIME_SCALE: "0.001",
      LOCAL_STATE_DIR: stateDir,
    });
    started.push(stack.child);
    await waitFor(
      () => stack.output().includes("Ctrl-C stops everything."),
      120_000,
      "the ready message",
      stack.output,
    );
    relay = `http://127.0.0.1:${ports.PORT}`;
  }, 180_000);

  afterAll(async () => {
    for (const child of started) if (child.exitCode === null) child.kill("SIGKILL");
    await rm(stateDir, { recursive: true, force: true });
  });

  it("prints what it promises and a curl whose callback arrives verified", async () => {
    const text = stack.output();
    expect(text).toContain(`relay        http://127.0.0.1:${ports.PORT}`);
    expect(text).toContain(`simulator    http://127.0.0.1:${ports.SIM_PORT}`);
    expect(text).toContain(`receiver     http://127.0.0.1:${ports.RECEIVER_PORT}/callback`);
    expect(text).toContain("admin token  dev-admin-token");
    devKey = text.match(/API key\s+(trk_\S+)/)?.[1] ?? "";
    const body = text.match(/-d '(\{.*\})'/)?.[1];
    expect(devKey).toMatch(/^trk_/);
    expect(body).toBeDefined();

    // What the printed curl does.
    const response = await fetch(`${relay}/v1/runs`, {
      method: "POST",
      headers: { authorization: `Bearer ${devKey}`, "content-type": "application/json" },
      body,
    });
    expect(response.status).toBe(202);
    const run = (await response.json()) as { id: string };
    await waitFor(
      () => stack.output().includes(`verified run.completed for ${run.id}`),
      30_000,
      "the callback",
      stack.output,
    );
  }, 60_000);

  it("runs the README's shell examples as written, its callbacks verified by the receiver", async () => {
    const blocks = await readmeShellBlocks();
    // Using it, the schedule, live progress: a block added to the section runs here too.
    expect(blocks.length).toBeGreaterThanOrEqual(3);
    const onThisStack = (block: string) =>
      block
        .replaceAll("localhost:8787", `127.0.0.1:${ports.PORT}`)
        .replaceAll("127.0.0.1:8789", `127.0.0.1:${ports.RECEIVER_PORT}`);
    // As pasted into one shell, except that an HTTP error fails the script (a pasted curl -s would
    // show it and go on) and no request may hang.
    const script = [
      "set -euo pipefail",
      'curl() { command curl --fail-with-body --max-time 60 "$@"; }',
      ...blocks.map((block, index) => `echo "::block ${index}::"\n${onThisStack(block)}`),
      'echo "::run $RUN_ID::"',
    ].join("\n");
    const result = await bash(script, 120_000);
    expect(result.code, `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`).toBe(0);

    const [, keyAndRun = "", schedule = "", progress = ""] = result.stdout.split(/::block \d+::\n/);
    const [keyJson = "{}", runJson = "{}", resultJson = "{}"] = keyAndRun.trim().split("\n");
    const key = JSON.parse(keyJson) as { key: string; signing_secret: string };
    expect(key.signing_secret).toMatch(/^whsec_/);
    expect(key.key).not.toBe(devKey);
    const run = JSON.parse(runJson) as { id: string; callback: { url: string } };
    expect(run.callback.url).toBe(`http://127.0.0.1:${ports.RECEIVER_PORT}/callback`);
    expect(JSON.parse(resultJson)).toMatchObject({
      run: { id: run.id, status: "completed" },
      output: { type: "json", content: { gdp: expect.any(String) } },
    });
    expect(schedule).toMatch(
      /"input":"What did Acme announce since the start of the month\? Today is \d{4}-\d{2}-\d{2}\."/,
    );
    expect(progress).toContain("event: end");

    // The README's key is not the one npm start printed: the receiver learned its secret.
    const scheduledRun = result.stdout.match(/::run (run_\w+)::/)?.[1];
    for (const id of [run.id, scheduledRun]) {
      await waitFor(
        () => stack.output().includes(`verified run.completed for ${id}`),
        30_000,
        `the verified callback of ${id}`,
        stack.output,
      );
    }
    expect(stack.output()).not.toContain("UNVERIFIED");
  }, 180_000);

  it("says why it cannot verify a callback, in one line", async () => {
    const response = await fetch(`http://127.0.0.1:${ports.RECEIVER_PORT}/callback`, {
      method: "POST",
      headers: {
        "webhook-id": "dlv_01M8V4BQRH6EW846EERBZFSSMB",
        "webhook-timestamp": String(Math.floor(Date.now() / 1000)),
        "webhook-signature": "v1,bm90IGEgc2lnbmF0dXJl",
      },
      body: "{}",
    });
    expect(response.status).toBe(401);
    const line =
      "[receiver] UNVERIFIED callback (webhook-id dlv_01M8V4BQRH6EW846EERBZFSSMB, attempt 1), answered 401: " +
      "webhook-id dlv_01M8V4BQRH6EW846EERBZFSSMB is no delivery of this local stack, so its signing secret is unknown here";
    await waitFor(() => stack.output().includes(line), 10_000, "the receiver's reason", stack.output);
  });

  it("records a failed delivery in words, from workerd's real errors", async () => {
    // A closed port; a plain-http server behind an https URL; a server that takes the connection and
    // never answers; a name that cannot resolve (.invalid never does).
    const closed = await freePort();
    const plain = createHttpServer((_, res) => res.end("plain http"));
    const sockets: Socket[] = [];
    const silent = createServer((socket) => sockets.push(socket));
    const [plainPort, silentPort] = await Promise.all(
      [plain, silent].map(
        (server) =>
          new Promise<number>((resolve) =>
            server.listen(0, "127.0.0.1", () => resolve((server.address() as { port: number }).port)),
          ),
      ),
    );
    try {
      const cases = [
        [
          `http://127.0.0.1:${closed}/callback`,
          `could not connect to 127.0.0.1:${closed}, or it closed the connection before answering (connection refused or reset): is the receiver listening there?`,
        ],
        [
          `https://127.0.0.1:${plainPort}/callback`,
          `TLS handshake with 127.0.0.1:${plainPort} failed: does it serve https?`,
        ],
        [`http://127.0.0.1:${silentPort}/callback`, "no response within 15 s"],
        ["http://taskrelay-test.invalid/callback", "could not resolve taskrelay-test.invalid"],
      ] as const;
      const runs = await Promise.all(
        cases.map(async ([url]) => {
          const response = await fetch(`${relay}/v1/runs`, {
            method: "POST",
            headers: { authorization: `Bearer ${devKey}`, "content-type": "application/json" },
            body: JSON.stringify({ processor: "base", input: "Where does this go?", callback: { url } }),
          });
          expect(response.status, await response.clone().text()).toBe(202);
          return ((await response.json()) as { id: string }).id;
        }),
      );
      type Deliveries = {
        data: Array<{ attempts: Array<{ status_code: number | null; error: string | null }> }>;
      };
      const firstAttempt = async (runId: string) => {
        const response = await fetch(`${relay}/v1/runs/${runId}/deliveries`, {
          headers: { authorization: `Bearer ${devKey}` },
        });
        return ((await response.json()) as Deliveries).data[0]?.attempts[0];
      };
      for (const [index, [, words]] of cases.entries()) {
        const runId = runs[index] as string;
        await waitFor(
          async () => (await firstAttempt(runId)) !== undefined,
          60_000,
          `an attempt for ${runId}`,
          stack.output,
        );
        expect(await firstAttempt(runId)).toMatchObject({ status_code: null, error: words });
      }
    } finally {
      for (const socket of sockets) socket.destroy();
      await Promise.all([plain, silent].map((server) => new Promise((resolve) => server.close(resolve))));
    }
  }, 120_000);

  it("stops everything on SIGINT", async () => {
    stack.child.kill("SIGINT");
    expect(await exited(stack.child)).toBe(0);
    for (const port of Object.values(ports))
      expect(await listening(port), `port ${port} still answers`).toBe(false);
  }, 60_000);
});

describe("npm start with a port in use", () => {
  const started: ChildProcess[] = [];
  afterAll(() => {
    for (const child of started) if (child.exitCode === null) child.kill("SIGKILL");
  });

  it("says which port is in use and exits, instead of hanging", async () => {
    const blocker = createServer();
    const port = await freePort();
    await new Promise<void>((resolve) => blocker.listen(port, "127.0.0.1", () => resolve()));
    try {
      const { child, output } = launch({
        PORT: String(port),
        SIM_PORT: String(await freePort()),
        RECEIVER_PORT: String(await freePort()),
      });
      started.push(child);
      expect(await exited(child)).toBe(1);
      expect(output()).toContain(`Port ${port} on 127.0.0.1 is already in use`);
      expect(output()).toContain("PORT=<port>");
    } finally {
      blocker.close();
    }
  }, 60_000);
});
