// Tenancy: every tenant shares taskrelay's one Parallel account, so a tenant may build only on its
// own runs' interactions; and revoking a key stops what would spend for it while what it is already
// owed is still delivered. Parallel and the callback receiver are MSW at HTTP.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import worker from "../../src/index";
import { triggerScheduleFor } from "../../src/services/viewer";
import { deliveryContext, fakeReceiver, RECEIVER, status } from "./delivery-harness";
import {
  ADMIN,
  api,
  createTenant,
  emptyBackgroundWork,
  expectJson,
  fakeParallel,
  parallelError,
  postJson,
  RELAY,
  resultReply,
  signWebhook,
  TEXT_RUN,
  type Tenant,
  webhookBody,
} from "./harness";
import { tickAndWork } from "./queue-harness";

const MINUTE = 60_000;

/** A cron tick at `at` and the queue consumer working what it handed out; per job, what happened. */
const tick = async (at: Date) => (await tickAndWork(at)).summaries;

interface RunBody {
  id: string;
  status: string;
  parallel_run_id: string | null;
  interaction_id: string | null;
  result_available: boolean;
  error: { code: string; message: string } | null;
}

const revoke = async (tenant: Tenant) =>
  expectJson(await api(`/v1/keys/${tenant.id}`, { method: "DELETE", headers: ADMIN }), 200);

async function sendWebhook(body: string) {
  const ctx = createExecutionContext();
  const response = await worker.fetch(
    new Request(`${RELAY}/webhooks/parallel`, { method: "POST", headers: signWebhook(body), body }),
    env,
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return response;
}

beforeEach(emptyBackgroundWork);

describe("previous_interaction_id", () => {
  it("is accepted for the caller's own run, and refused with 404 for another tenant's, as for an unknown id", async () => {
    const alice = await createTenant("alice");
    const mallory = await createTenant("mallory");
    const parallel = fakeParallel();
    const research = await expectJson<RunBody>(await postJson("/v1/runs", TEXT_RUN, alice.auth), 202);
    const interaction = research.interaction_id ?? "";
    expect(interaction).toMatch(/^trun_/);

    const stolen = await expectJson<{ error: { code: string; message: string } }>(
      await postJson("/v1/runs", { ...TEXT_RUN, previous_interaction_id: interaction }, mallory.auth),
      404,
    );
    const unknown = await expectJson<{ error: { code: string; message: string } }>(
      await postJson(
        "/v1/runs",
        { ...TEXT_RUN, previous_interaction_id: "trun_00000000000000000000000000000000" },
        mallory.auth,
      ),
      404,
    );
    expect(stolen.error.code).toBe("not_found");
    expect(unknown.error.code).toBe("not_found");
    // The same answer, word for word but the id: nothing says the id exists for someone else.
    expect(stolen.error.message.replace(interaction, "ID")).toBe(
      unknown.error.message.replace("trun_00000000000000000000000000000000", "ID"),
    );
    // Nothing was stored for Mallory, nothing sent to Parallel.
    expect(parallel.creates()).toHaveLength(1);
    const mallorys = await expectJson<{ data: unknown[] }>(
      await api("/v1/runs", { headers: mallory.auth }),
      200,
    );
    expect(mallorys.data).toEqual([]);

    const followUp = await expectJson<RunBody>(
      await postJson("/v1/runs", { ...TEXT_RUN, previous_interaction_id: interaction }, alice.auth),
      202,
    );
    expect(followUp.status).toBe("queued");
    expect(parallel.creates().at(-1)?.body).toMatchObject({ previous_interaction_id: interaction });
  });

  it("looks the interaction up through indexes, not by scanning the tenant's runs", async () => {
    const plan = await env.DB.prepare(
      `EXPLAIN QUERY PLAN
       SELECT id FROM runs WHERE parallel_run_id = ? AND interaction_id = ? AND api_key_id = ?
       UNION ALL
       SELECT id FROM runs WHERE interaction_id = ? AND interaction_id <> parallel_run_id AND api_key_id = ?
       LIMIT 1`,
    )
      .bind("x", "x", "k", "x", "k")
      .all<{ detail: string }>();
    const details = plan.results.map((r) => r.detail).join(" | ");
    expect(details).toContain("runs_by_other_interaction");
    expect(details).toMatch(/runs_by_parallel_id \(parallel_run_id=\?\)/);
    expect(details).not.toMatch(/SCAN runs/);
  });
});

describe("a revoked key", () => {
  it("has its submitting runs ended, not resubmitted to Parallel", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel({ create: () => parallelError(503, "Service unavailable") });
    const run = await expectJson<RunBody>(await postJson("/v1/runs", TEXT_RUN, tenant.auth), 202);
    expect(run.status).toBe("submitting");
    await revoke(tenant);

    expect(await tick(new Date(Date.now() + 60 * MINUTE))).toMatchObject({
      resubmit_runs: { claimed: 1, failed: 1 },
    });
    expect(parallel.creates()).toHaveLength(1);
    // Read as the admin sees it: the key itself no longer authenticates.
    const row = await env.DB.prepare("SELECT status, error FROM runs WHERE id = ?")
      .bind(run.id)
      .first<{ status: string; error: string }>();
    expect(row?.status).toBe("failed");
    expect(JSON.parse(row?.error ?? "{}")).toMatchObject({ code: "key_revoked" });
    expect(await tick(new Date(Date.now() + 120 * MINUTE))).toMatchObject({ resubmit_runs: { claimed: 0 } });
  });

  it("has no schedule occurrence started for it, not even by the admin's run-now", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const schedule = await expectJson<{ id: string }>(
      await postJson(
        "/v1/schedules",
        {
          name: "nightly",
          cron: "0 3 * * *",
          timezone: "UTC",
          template: { processor: "base", input: "What changed?" },
        },
        tenant.auth,
      ),
      201,
    );
    await revoke(tenant);
    const { ctx } = deliveryContext();
    await expect(triggerScheduleFor(ctx, { kind: "admin" }, schedule.id)).rejects.toMatchObject({
      code: "invalid_state",
    });
    expect(parallel.creates()).toHaveLength(0);
  });

  it("still gets what it is owed: a run already at Parallel is fetched and its callback delivered", async () => {
    const tenant = await createTenant();
    fakeParallel({ result: (call) => resultReply(call.path.split("/")[4] ?? "") });
    const receiver = fakeReceiver();
    const run = await expectJson<RunBody>(
      await postJson("/v1/runs", { ...TEXT_RUN, callback: { url: RECEIVER } }, tenant.auth),
      202,
    );
    await revoke(tenant);
    const body = webhookBody({ run_id: run.parallel_run_id ?? "", status: "completed" });
    expect((await sendWebhook(body)).status).toBe(200);
    expect(receiver.calls).toHaveLength(1);
    expect(JSON.parse(receiver.calls[0]?.body ?? "{}")).toMatchObject({
      type: "run.completed",
      data: { run: { id: run.id, status: "completed" } },
    });
  });

  it("still gets a delivery created before the revocation, retried by the sweeper", async () => {
    const tenant = await createTenant();
    fakeParallel({ result: (call) => resultReply(call.path.split("/")[4] ?? "") });
    const receiver = fakeReceiver([status(503), status(503), status(204)]);
    const run = await expectJson<RunBody>(
      await postJson("/v1/runs", { ...TEXT_RUN, callback: { url: RECEIVER } }, tenant.auth),
      202,
    );
    const body = webhookBody({ run_id: run.parallel_run_id ?? "", status: "completed" });
    // Attempts 1 and 2 (5 s apart) in the webhook's invocation fail; the rest are the sweeper's.
    expect((await sendWebhook(body)).status).toBe(200);
    const pending = await env.DB.prepare("SELECT status FROM deliveries WHERE run_id = ?")
      .bind(run.id)
      .first<{ status: string }>();
    expect(pending?.status).toBe("pending");
    const before = receiver.calls.length;
    await revoke(tenant);
    // The sweeper keeps retrying until the receiver takes it.
    for (let i = 1; i <= 3 && receiver.calls.length < 3; i++) {
      await tick(new Date(Date.now() + i * 60 * MINUTE));
    }
    expect(before).toBe(2);
    expect(receiver.calls).toHaveLength(3);
    const delivery = await env.DB.prepare("SELECT status FROM deliveries WHERE run_id = ?")
      .bind(run.id)
      .first<{ status: string }>();
    expect(delivery?.status).toBe("succeeded");
  }, 30_000);
});
