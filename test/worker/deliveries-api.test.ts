// The delivery endpoints and signing-secret rotation, through the Worker's fetch handler: what each
// shows, dead letters retried, two signatures after a rotation, and every route scoped to its key.
import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { insertDelivery } from "../../src/db/deliveries";
import { newId } from "../../src/ids";
import { startRunDelivery } from "../../src/services/deliveries";
import { onRunFinished } from "../../src/services/run-finished";
import {
  clockRuntime,
  deliveryContext,
  eventually,
  fakeReceiver,
  onlyDeliveryOf,
  RECEIVER,
  status,
  storeFinishedRun,
  testClock,
} from "./delivery-harness";
import { ADMIN, api, createTenant, expectJson, type Tenant } from "./harness";

interface DeliveryBody {
  id: string;
  run_id: string;
  event: string;
  url: string;
  status: string;
  series: number;
  attempt_count: number;
  next_attempt_at: string | null;
  last_status_code: number | null;
  last_error: string | null;
  attempts?: Array<{ series: number; attempt: number; status_code: number | null; error: string | null }>;
}

/** A finished run of the tenant's whose delivery has run its in-invocation course against `replies`. */
async function deliveredRun(tenant: Tenant, replies = [status(204)]) {
  const receiver = fakeReceiver(replies);
  const run = await storeFinishedRun(tenant.id);
  const { ctx, settle } = deliveryContext();
  await onRunFinished(ctx, run);
  await settle();
  return { run, delivery: await onlyDeliveryOf(run.id), receiver };
}

const post = (path: string, headers: Record<string, string>) => api(path, { method: "POST", headers });

describe("GET /v1/runs/:id/deliveries", () => {
  it("shows the run's delivery with every attempt", async () => {
    const tenant = await createTenant();
    const { run, delivery } = await deliveredRun(tenant);
    const body = await expectJson<{ run_id: string; data: DeliveryBody[] }>(
      await api(`/v1/runs/${run.id}/deliveries`, { headers: tenant.auth }),
      200,
    );
    expect(body.run_id).toBe(run.id);
    expect(body.data).toHaveLength(1);
    expect(body.data[0]).toMatchObject({
      id: delivery.id,
      run_id: run.id,
      event: "run.completed",
      url: RECEIVER,
      status: "succeeded",
      series: 1,
      attempt_count: 1,
      next_attempt_at: null,
      last_status_code: 204,
      last_error: null,
      attempts: [{ series: 1, attempt: 1, status_code: 204, error: null }],
    });
    expect(body.data[0]).not.toHaveProperty("lease_until");
    expect(body.data[0]).not.toHaveProperty("api_key_id");
  });
});

describe("GET /v1/deliveries", () => {
  it("lists the key's deliveries newest first, by status, a page at a time", async () => {
    const tenant = await createTenant();
    const first = await deliveredRun(tenant);
    const gone = await deliveredRun(tenant, [status(410)]);
    const third = await deliveredRun(tenant);

    const page1 = await expectJson<{ data: DeliveryBody[]; next_cursor: string | null }>(
      await api("/v1/deliveries?limit=2", { headers: tenant.auth }),
      200,
    );
    expect(page1.data.map((d) => d.id)).toEqual([third.delivery.id, gone.delivery.id]);
    expect(page1.next_cursor).toEqual(expect.any(String));
    const page2 = await expectJson<{ data: DeliveryBody[]; next_cursor: string | null }>(
      await api(`/v1/deliveries?limit=2&cursor=${page1.next_cursor}`, { headers: tenant.auth }),
      200,
    );
    expect(page2.data.map((d) => d.id)).toEqual([first.delivery.id]);
    expect(page2.next_cursor).toBeNull();

    const dead = await expectJson<{ data: DeliveryBody[] }>(
      await api("/v1/deliveries?status=dead", { headers: tenant.auth }),
      200,
    );
    expect(dead.data.map((d) => [d.id, d.status, d.last_status_code])).toEqual([
      [gone.delivery.id, "dead", 410],
    ]);
  });

  it("refuses an unknown status and a cursor it did not issue", async () => {
    const tenant = await createTenant();
    const badStatus = await expectJson<{ error: { code: string; details: Array<{ path: string }> } }>(
      await api("/v1/deliveries?status=lost", { headers: tenant.auth }),
      422,
    );
    expect(badStatus.error.details[0]?.path).toBe("status");
    const badCursor = await expectJson<{ error: { code: string } }>(
      await api("/v1/deliveries?cursor=nonsense!", { headers: tenant.auth }),
      422,
    );
    expect(badCursor.error.code).toBe("validation_failed");
  });
});

describe("POST /v1/deliveries/:id/retry", () => {
  it("sends a dead letter again: a new series with the same webhook-id", async () => {
    const tenant = await createTenant();
    const { run, delivery, receiver } = await deliveredRun(tenant, [status(410), status(200)]);
    expect(delivery.status).toBe("dead");

    const retried = await expectJson<DeliveryBody>(
      await post(`/v1/deliveries/${delivery.id}/retry`, tenant.auth),
      202,
    );
    expect(retried).toMatchObject({ id: delivery.id, status: "pending", series: 2, attempt_count: 0 });

    const shown = await eventually(async () => {
      const body = await expectJson<{ data: DeliveryBody[] }>(
        await api(`/v1/runs/${run.id}/deliveries`, { headers: tenant.auth }),
        200,
      );
      expect(body.data[0]?.status).toBe("succeeded");
      return body.data[0];
    });
    expect(shown?.attempts?.map((a) => [a.series, a.attempt, a.status_code])).toEqual([
      [1, 1, 410],
      [2, 1, 200],
    ]);
    expect(receiver.calls.map((c) => c.headers["webhook-id"])).toEqual([delivery.id, delivery.id]);
    for (const call of receiver.calls) new Webhook(tenant.signingSecret).verify(call.body, call.headers);
    const timeline = await expectJson<{ events: Array<{ kind: string }> }>(
      await api(`/v1/runs/${run.id}/timeline`, { headers: tenant.auth }),
      200,
    );
    expect(timeline.events.map((e) => e.kind).filter((k) => k.startsWith("delivery_"))).toEqual([
      "delivery_created",
      "delivery_attempted",
      "delivery_dead",
      "delivery_retried",
      "delivery_attempted",
      "delivery_succeeded",
    ]);
  });

  it("sends a succeeded delivery again", async () => {
    const tenant = await createTenant();
    const { delivery, receiver } = await deliveredRun(tenant, [status(200)]);
    await expectJson(await post(`/v1/deliveries/${delivery.id}/retry`, tenant.auth), 202);
    await eventually(async () => expect(receiver.calls).toHaveLength(2));
    await eventually(async () => expect((await onlyDeliveryOf(delivery.run_id)).status).toBe("succeeded"));
  });

  /** A pending delivery of a finished run: two attempts failed, the third is due in 5 minutes. */
  async function waitingDelivery(tenant: Tenant, leaseUntil: string | null = null) {
    const run = await storeFinishedRun(tenant.id);
    const now = new Date();
    const id = newId("dlv", now);
    const later = new Date(now.getTime() + 300_000).toISOString();
    await insertDelivery(
      env.DB,
      {
        id,
        run_id: run.id,
        api_key_id: tenant.id,
        event: "run.completed",
        url: RECEIVER,
        status: "pending",
        series: 1,
        attempt_count: 2,
        next_attempt_at: later,
        lease_until: leaseUntil,
        last_attempt_at: now.toISOString(),
        last_status_code: 500,
        last_error: "HTTP 500",
        created_at: now.toISOString(),
        updated_at: now.toISOString(),
      },
      { kind: "delivery_created", detail: { delivery_id: id } },
    );
    return { run, id, later };
  }

  it("sends a pending delivery's next attempt now, in the same series", async () => {
    const tenant = await createTenant();
    const receiver = fakeReceiver([status(204)]);
    const { run, id } = await waitingDelivery(tenant);
    const retried = await expectJson<DeliveryBody>(
      await post(`/v1/deliveries/${id}/retry`, tenant.auth),
      202,
    );
    expect(retried).toMatchObject({ id, status: "pending", series: 1, attempt_count: 2 });
    await eventually(async () => expect((await onlyDeliveryOf(run.id)).status).toBe("succeeded"));
    const stored = await onlyDeliveryOf(run.id);
    expect(stored).toMatchObject({ series: 1, attempt_count: 3, last_status_code: 204 });
    expect(receiver.calls.map((c) => c.headers["webhook-id"])).toEqual([id]);
  });

  it("refuses, with 409 invalid_state, a pending delivery whose attempt is being sent right now", async () => {
    const tenant = await createTenant();
    const leaseUntil = new Date(Date.now() + 60_000).toISOString();
    const { run, id, later } = await waitingDelivery(tenant, leaseUntil);
    const body = await expectJson<{ error: { code: string; message: string } }>(
      await post(`/v1/deliveries/${id}/retry`, tenant.auth),
      409,
    );
    expect(body.error.code).toBe("invalid_state");
    expect(body.error.message).toContain("being sent right now");
    const stored = await onlyDeliveryOf(run.id);
    expect(stored.next_attempt_at).toBe(later);
    expect(stored.lease_until).toBe(leaseUntil);
    const timeline = await expectJson<{ events: Array<{ kind: string }> }>(
      await api(`/v1/runs/${run.id}/timeline`, { headers: tenant.auth }),
      200,
    );
    expect(timeline.events.map((e) => e.kind)).not.toContain("delivery_retried");
  });
});

describe("POST /v1/keys/:id/signing-secret/rotate", () => {
  it("returns a new secret once; for 24 hours deliveries carry two signatures that each verify", async () => {
    const tenant = await createTenant();
    const rotated = await expectJson<{
      id: string;
      signing_secret: string;
      previous_signing_secret_expires_at: string;
    }>(await post(`/v1/keys/${tenant.id}/signing-secret/rotate`, ADMIN), 200);
    expect(rotated.id).toBe(tenant.id);
    expect(rotated.signing_secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(rotated.signing_secret).not.toBe(tenant.signingSecret);
    const expiresIn = Date.parse(rotated.previous_signing_secret_expires_at) - Date.now();
    expect(Math.abs(expiresIn - 24 * 3_600_000)).toBeLessThan(10_000);

    const { receiver } = await deliveredRun(tenant);
    const [call] = receiver.calls;
    if (!call) throw new Error("no callback");
    const signatures = call.headers["webhook-signature"]?.split(" ") ?? [];
    expect(signatures).toHaveLength(2);
    // Each secret verifies on its own, with only its own signature in the header.
    const [newSignature, oldSignature] = signatures;
    const only = (signature = "") => ({ ...call.headers, "webhook-signature": signature });
    new Webhook(rotated.signing_secret).verify(call.body, only(newSignature));
    new Webhook(tenant.signingSecret).verify(call.body, only(oldSignature));
    expect(() => new Webhook(tenant.signingSecret).verify(call.body, only(newSignature))).toThrow();
    // And a receiver with either secret accepts the delivery as sent.
    new Webhook(rotated.signing_secret).verify(call.body, call.headers);
    new Webhook(tenant.signingSecret).verify(call.body, call.headers);
  });

  it("signs with the new secret alone once the 24 hours are over", async () => {
    const tenant = await createTenant();
    const rotated = await expectJson<{ signing_secret: string }>(
      await post(`/v1/keys/${tenant.id}/signing-secret/rotate`, ADMIN),
      200,
    );
    const receiver = fakeReceiver();
    const clock = testClock(new Date(Date.now() + 24 * 3_600_000 + 60_000));
    const { ctx, settle } = deliveryContext({ now: clock.now });
    await startRunDelivery(ctx, await storeFinishedRun(tenant.id, {}, clock.now()), clockRuntime(clock));
    await settle();

    const [call] = receiver.calls;
    if (!call) throw new Error("no callback");
    const id = call.headers["webhook-id"] ?? "";
    const at = new Date(Number(call.headers["webhook-timestamp"]) * 1000);
    // The clock is a day ahead, beyond the library's timestamp tolerance: compare signatures instead.
    expect(call.headers["webhook-signature"]).toBe(
      new Webhook(rotated.signing_secret).sign(id, at, call.body),
    );
  });

  it("lets a key rotate its own secret", async () => {
    const tenant = await createTenant();
    const rotated = await expectJson<{ signing_secret: string }>(
      await post(`/v1/keys/${tenant.id}/signing-secret/rotate`, tenant.auth),
      200,
    );
    expect(rotated.signing_secret).not.toBe(tenant.signingSecret);
  });

  it("answers 404 for an unknown key, and 401 without the admin token or a key", async () => {
    const tenant = await createTenant();
    const unknown = await expectJson<{ error: { code: string } }>(
      await post(`/v1/keys/key_${"0".repeat(26)}/signing-secret/rotate`, ADMIN),
      404,
    );
    expect(unknown.error.code).toBe("not_found");
    await expectJson(await post(`/v1/keys/${tenant.id}/signing-secret/rotate`, {}), 401);
    await expectJson(
      await post(`/v1/keys/${tenant.id}/signing-secret/rotate`, { authorization: "Bearer trk_nope" }),
      401,
    );
  });
});

describe("tenant isolation", () => {
  it("another key's deliveries, runs and secrets are not found, exactly as unknown ids", async () => {
    const owner = await createTenant("owner");
    const intruder = await createTenant("intruder");
    const { run, delivery, receiver } = await deliveredRun(owner, [status(410)]);
    const unknownRun = `run_${"0".repeat(26)}`;
    const unknownDelivery = `dlv_${"0".repeat(26)}`;

    const notFound = async (response: Response) =>
      (await expectJson<{ error: { code: string; message: string } }>(response, 404)).error;
    const theirs = await notFound(await api(`/v1/runs/${run.id}/deliveries`, { headers: intruder.auth }));
    const nobody = await notFound(await api(`/v1/runs/${unknownRun}/deliveries`, { headers: intruder.auth }));
    expect(theirs.message.replace(run.id, "ID")).toBe(nobody.message.replace(unknownRun, "ID"));

    const retryTheirs = await notFound(await post(`/v1/deliveries/${delivery.id}/retry`, intruder.auth));
    const retryNobody = await notFound(await post(`/v1/deliveries/${unknownDelivery}/retry`, intruder.auth));
    expect(retryTheirs.message.replace(delivery.id, "ID")).toBe(
      retryNobody.message.replace(unknownDelivery, "ID"),
    );

    const rotateTheirs = await notFound(
      await post(`/v1/keys/${owner.id}/signing-secret/rotate`, intruder.auth),
    );
    expect(rotateTheirs.code).toBe("not_found");

    const listed = await expectJson<{ data: DeliveryBody[] }>(
      await api("/v1/deliveries", { headers: intruder.auth }),
      200,
    );
    expect(listed.data.map((d) => d.id)).not.toContain(delivery.id);
    const listedDead = await expectJson<{ data: DeliveryBody[] }>(
      await api("/v1/deliveries?status=dead", { headers: intruder.auth }),
      200,
    );
    expect(listedDead.data).toEqual([]);

    // Nothing the intruder did changed the owner's delivery or secret.
    expect((await onlyDeliveryOf(run.id)).status).toBe("dead");
    expect(receiver.calls).toHaveLength(1);
    const secret = await env.DB.prepare("SELECT signing_secret FROM api_keys WHERE id = ?")
      .bind(owner.id)
      .first<{ signing_secret: string }>();
    expect(secret?.signing_secret).toBe(owner.signingSecret);
  });

  it.each([
    ["GET", "/v1/runs/run_x/deliveries"],
    ["GET", "/v1/deliveries"],
    ["POST", "/v1/deliveries/dlv_x/retry"],
  ])("%s %s needs an API key", async (method, path) => {
    const missing = await expectJson<{ error: { code: string } }>(await api(path, { method }), 401);
    expect(missing.error.code).toBe("unauthorized");
    await expectJson(await api(path, { method, headers: { authorization: "Bearer trk_unknown" } }), 401);
    // The admin token is not an API key.
    await expectJson(await api(path, { method, headers: ADMIN }), 401);
  });
});
