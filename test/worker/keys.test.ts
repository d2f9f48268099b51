import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ADMIN, api, createTenant, expectJson, fakeParallel, postJson, TEXT_RUN } from "./harness";

describe("API keys", () => {
  it("creates a key shown once, with a Standard Webhooks signing secret, and stores only its hash", async () => {
    const created = await expectJson<Record<string, string>>(
      await postJson("/v1/keys", { name: "billing" }, ADMIN),
      201,
    );
    expect(created.id).toMatch(/^key_/);
    expect(created.name).toBe("billing");
    expect(created.key).toMatch(/^trk_[A-Za-z0-9_-]{43}$/);
    expect(created.key_prefix).toBe(created.key?.slice(0, 12));
    expect(created.signing_secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(atob(created.signing_secret?.slice(6) ?? "")).toHaveLength(32);

    const row = await env.DB.prepare("SELECT * FROM api_keys WHERE id = ?")
      .bind(created.id)
      .first<Record<string, string>>();
    expect(JSON.stringify(row)).not.toContain(created.key);
    expect(row?.key_hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it("lists keys without their secrets", async () => {
    const tenant = await createTenant("listed");
    const list = await expectJson<{ data: Array<Record<string, unknown>> }>(
      await api("/v1/keys", { headers: ADMIN }),
      200,
    );
    const listed = list.data.find((k) => k.id === tenant.id);
    expect(listed).toMatchObject({ name: "listed", revoked_at: null });
    expect(listed).not.toHaveProperty("key");
    expect(listed).not.toHaveProperty("signing_secret");
    expect(JSON.stringify(list)).not.toContain(tenant.key);
    expect(JSON.stringify(list)).not.toContain(tenant.signingSecret);
  });

  it("revokes a key: it stops authenticating at once", async () => {
    const tenant = await createTenant();
    fakeParallel();
    await expectJson(await postJson("/v1/runs", TEXT_RUN, tenant.auth), 202);
    const revoked = await expectJson<{ revoked_at: string }>(
      await api(`/v1/keys/${tenant.id}`, { method: "DELETE", headers: ADMIN }),
      200,
    );
    expect(revoked.revoked_at).toBeTruthy();
    const refused = await expectJson<{ error: { code: string } }>(
      await api("/v1/runs", { headers: tenant.auth }),
      401,
    );
    expect(refused.error.code).toBe("unauthorized");
    // Revoking again is harmless and keeps the first time.
    const again = await expectJson<{ revoked_at: string }>(
      await api(`/v1/keys/${tenant.id}`, { method: "DELETE", headers: ADMIN }),
      200,
    );
    expect(again.revoked_at).toBe(revoked.revoked_at);
  });

  it("answers 404 for revoking an unknown key", async () => {
    await expectJson(await api("/v1/keys/key_nope", { method: "DELETE", headers: ADMIN }), 404);
  });

  it.each([
    ["no token", {}],
    ["a wrong token", { authorization: "Bearer not-the-admin-token" }],
    ["an API key instead of the admin token", null],
  ])("refuses key management with %s", async (_, headers) => {
    const auth = headers ?? (await createTenant()).auth;
    for (const response of [
      await postJson("/v1/keys", { name: "x" }, auth),
      await api("/v1/keys", { headers: auth }),
      await api("/v1/keys/key_x", { method: "DELETE", headers: auth }),
    ]) {
      const body = await expectJson<{ error: { code: string } }>(response, 401);
      expect(body.error.code).toBe("unauthorized");
    }
  });

  it("validates the name", async () => {
    const body = await expectJson<{ error: { code: string; details: Array<{ path: string }> } }>(
      await postJson("/v1/keys", { name: "" }, ADMIN),
      422,
    );
    expect(body.error.details[0]?.path).toBe("name");
  });
});
