// The D1 double every Worker test runs through (d1-limits.ts) refuses what Cloudflare's D1 refuses.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { listScheduleNames } from "../../src/db/schedules";
import worker from "../../src/index";
import { asInvocation, D1_LIMITS } from "./d1-limits";
import { api, createTenant, RELAY } from "./harness";

const db = () => env.DB;

describe("the D1 limits double", () => {
  it("refuses a string over 2,000,000 bytes, and takes one at the limit", async () => {
    await db().prepare("CREATE TABLE IF NOT EXISTS limits_probe (value TEXT)").run();
    const insert = (value: string) =>
      db().prepare("INSERT INTO limits_probe (value) VALUES (?)").bind(value).run();
    await expect(insert("x".repeat(D1_LIMITS.valueBytes))).resolves.toBeDefined();
    expect(() =>
      db()
        .prepare("INSERT INTO limits_probe (value) VALUES (?)")
        .bind("x".repeat(D1_LIMITS.valueBytes + 1)),
    ).toThrow(/string or blob too big/);
    // Bytes, not characters: a million two-byte characters and one more byte is over.
    expect(() =>
      db()
        .prepare("INSERT INTO limits_probe (value) VALUES (?)")
        .bind(`${"é".repeat(1_000_000)}x`),
    ).toThrow(/too big/);
  });

  it("refuses a row over 2,000,000 bytes written by one statement, and one read back", async () => {
    await db().prepare("CREATE TABLE IF NOT EXISTS limits_pair (a TEXT, b TEXT)").run();
    const half = "y".repeat(1_200_000);
    expect(() => db().prepare("INSERT INTO limits_pair (a, b) VALUES (?, ?)").bind(half, half)).toThrow(
      /row too big/,
    );
    // A row grown past the limit by a second statement is refused at that statement, though the
    // UPDATE returns nothing: alone, in a batch, and whatever bound values it carries. (Local D1 has
    // written it by then; the test fails where Cloudflare's D1 would.)
    const fresh = async () => {
      await db().prepare("DELETE FROM limits_pair").run();
      await db().prepare("INSERT INTO limits_pair (a) VALUES (?)").bind(half).run();
    };
    await fresh();
    await expect(
      db().prepare("UPDATE limits_pair SET b = ? WHERE b IS NULL").bind(half).run(),
    ).rejects.toThrow(/row too big/);
    await fresh();
    await expect(
      db().batch([db().prepare("UPDATE limits_pair SET b = a || ? WHERE b IS NULL").bind("z")]),
    ).rejects.toThrow(/row too big/);
    // An UPDATE that keeps the row inside the limit runs as before, and returns no rows of the double's.
    await fresh();
    const small = await db().prepare("UPDATE limits_pair SET b = ? WHERE b IS NULL").bind("small").run();
    expect(small.meta.changes).toBe(1);
    expect(small.results).toEqual([]);
    await db().prepare("DELETE FROM limits_pair").run();
  });

  it("takes a page of 100 runs of distinct schedules when naming their schedules", async () => {
    const tenant = await createTenant();
    const at = new Date().toISOString();
    const ids = Array.from({ length: 100 }, (_, i) => `sch_limits_${String(i).padStart(3, "0")}`);
    await db().batch(
      ids.slice(0, 3).map((id, i) =>
        db()
          .prepare(
            `INSERT INTO schedules (id, api_key_id, name, cron, timezone, template, overlap, missed, notify,
               chain_interactions, enabled, created_at, updated_at)
             VALUES (?, ?, ?, '0 * * * *', 'UTC', '{}', 'skip', 'skip', 'always', 0, 0, ?, ?)`,
          )
          .bind(id, tenant.id, `schedule ${i}`, at, at),
      ),
    );
    // 100 ids and the key: one over D1's 100 bound parameters when each id was a parameter.
    const names = await listScheduleNames(db(), ids, tenant.id);
    expect(names.map((n) => n.name).sort()).toEqual(["schedule 0", "schedule 1", "schedule 2"]);
    expect(await listScheduleNames(db(), ids, "key_someone_else")).toEqual([]);
  });

  it("refuses more than 100 bound parameters and SQL over 100,000 bytes", () => {
    const placeholders = (n: number) => Array.from({ length: n }, () => "?").join(", ");
    const values = (n: number) => Array.from({ length: n }, (_, i) => i);
    expect(() =>
      db()
        .prepare(`SELECT ${placeholders(100)}`)
        .bind(...values(100)),
    ).not.toThrow();
    expect(() =>
      db()
        .prepare(`SELECT ${placeholders(101)}`)
        .bind(...values(101)),
    ).toThrow(/too many SQL variables/);
    expect(() => db().prepare(`SELECT '${"z".repeat(D1_LIMITS.sqlBytes)}'`)).toThrow(/statement too long/);
  });

  it("counts one invocation's D1 calls against SUBREQUEST_BUDGET, a batch as one", async () => {
    const select = () => db().prepare("SELECT 1").first();
    await asInvocation("test", 3, async () => {
      await select();
      await db().batch([db().prepare("SELECT 1"), db().prepare("SELECT 2")]);
      await select();
      await expect(select()).rejects.toThrow(/too many queries in one invocation/);
    });
    // Outside an invocation (a test's own queries) nothing is counted.
    await expect(select()).resolves.toBeDefined();
  });

  it("applies the budget to every call into the Worker's fetch handler", async () => {
    const tenant = await createTenant();
    const call = async (budget: string) => {
      const execution = createExecutionContext();
      const response = await worker.fetch(
        new Request(`${RELAY}/v1/runs`, { headers: tenant.auth }),
        { ...env, SUBREQUEST_BUDGET: budget },
        execution,
      );
      await waitOnExecutionContext(execution);
      return response.status;
    };
    // The key lookup and the list: two D1 calls.
    expect(await call("2")).toBe(200);
    expect(await call("1")).toBe(500);
  });

  it("applies it to requests through exports.default too (the harness's api())", async () => {
    const tenant = await createTenant();
    const bindings = env as { SUBREQUEST_BUDGET?: string };
    const budget = bindings.SUBREQUEST_BUDGET;
    bindings.SUBREQUEST_BUDGET = "1";
    try {
      expect((await api("/v1/runs", { headers: tenant.auth })).status).toBe(500);
    } finally {
      bindings.SUBREQUEST_BUDGET = budget;
    }
    expect((await api("/v1/runs", { headers: tenant.auth })).status).toBe(200);
  });
});
