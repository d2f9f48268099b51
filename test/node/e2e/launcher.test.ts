// `npm start` as a newcomer runs it: the launcher process on free ports prints what it promises, the
// printed curl creates a run whose callback arrives, Ctrl-C stops every process it started, and a
// port in use is a clear error instead of a hang.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
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

async function waitFor(check: () => boolean, timeoutMs: number, what: string, output: () => string) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
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

describe("npm start", () => {
  const started: ChildProcess[] = [];
  afterAll(() => {
    for (const child of started) if (child.exitCode === null) child.kill("SIGKILL");
  });

  it("runs the stack, prints a working curl with a callback, and stops everything on SIGINT", async () => {
    const ports = { PORT: await freePort(), SIM_PORT: await freePort(), RECEIVER_PORT: await freePort() };
    // Its own local D1 and dev key, so the test never touches a developer's running stack.
    const stateDir = await mkdtemp(join(tmpdir(), "taskrelay-launcher-"));
    const { child, output } = launch({
      PORT: String(ports.PORT),
      SIM_PORT: String(ports.SIM_PORT),
      RECEIVER_PORT: String(ports.RECEIVER_PORT),
      SIM_TIME_SCALE: "0.001",
      LOCAL_STATE_DIR: stateDir,
    });
    started.push(child);
    await waitFor(() => output().includes("Ctrl-C stops everything."), 120_000, "the ready message", output);

    const text = output();
    expect(text).toContain(`relay        http://127.0.0.1:${ports.PORT}`);
    expect(text).toContain(`simulator    http://127.0.0.1:${ports.SIM_PORT}`);
    expect(text).toContain("admin token  dev-admin-token");
    const key = text.match(/API key\s+(trk_\S+)/)?.[1];
    const body = text.match(/-d '(\{.*\})'/)?.[1];
    expect(key).toBeDefined();
    expect(body).toBeDefined();

    // What the printed curl does.
    const response = await fetch(`http://127.0.0.1:${ports.PORT}/v1/runs`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body,
    });
    expect(response.status).toBe(202);
    const run = (await response.json()) as { id: string };
    await waitFor(
      () => output().includes(`verified run.completed for ${run.id}`),
      30_000,
      "the callback",
      output,
    );

    child.kill("SIGINT");
    expect(await exited(child)).toBe(0);
    for (const port of Object.values(ports))
      expect(await listening(port), `port ${port} still answers`).toBe(false);
    await rm(stateDir, { recursive: true, force: true });
  }, 180_000);

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
