// Dashboard sign-in and its guards: the session cookie's flags and contents, what ends a session, the
// CSRF check on every form, and the security headers of every page.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { browser, formToken, parseSetCookies, signedIn, signIn } from "./dashboard-harness";
import { ADMIN, api, createTenant } from "./harness";

const ADMIN_TOKEN = ADMIN.authorization.replace("Bearer ", "");

async function sessionRows(): Promise<Array<Record<string, unknown>>> {
  const { results } = await env.DB.prepare("SELECT * FROM dashboard_sessions").all();
  return results;
}

describe("signing in", () => {
  it("redirects every page to the sign-in form without a session", async () => {
    const b = browser();
    for (const path of ["/dashboard", "/dashboard/runs", "/dashboard/runs/run_x", "/dashboard/schedules"]) {
      const response = await b.get(path);
      expect(response.status, path).toBe(303);
      expect(response.headers.get("location"), path).toMatch(/^\/dashboard\/(sign-in|runs)$/);
    }
    const stream = await b.get("/dashboard/runs/run_x/progress");
    expect(stream.status).toBe(401);
  });

  it("sets an HttpOnly, Secure, SameSite=Strict session cookie that does not hold the key", async () => {
    const tenant = await createTenant("cookie-check");
    const b = browser();
    const response = await signIn(b, tenant.key);
    expect(response.status).toBe(303);
    const session = parseSetCookies(response).find((c) => c.name === "taskrelay_session");
    expect(session).toBeDefined();
    const flags = session?.attributes.map((a) => a.toLowerCase()) ?? [];
    expect(flags).toEqual(
      expect.arrayContaining(["httponly", "secure", "samesite=strict", "path=/dashboard", "max-age=43200"]),
    );
    expect(session?.value).toMatch(/^k\.[A-Za-z0-9_-]{43}$/);
    expect(session?.value).not.toContain(tenant.key);
    expect(session?.value).not.toContain(tenant.key.slice(4, 20));
    // D1 keeps a digest of the cookie's token, never the token or the key.
    const token = session?.value.slice(2) ?? "";
    const stored = JSON.stringify(await sessionRows());
    expect(stored).not.toContain(token);
    expect(stored).not.toContain(tenant.key);
    const page = await b.page("/dashboard/runs");
    expect(page).toContain("cookie-check");
  });

  it("refuses a wrong credential with the form again, and no session", async () => {
    const b = browser();
    const response = await signIn(b, "trk_not-a-key");
    expect(response.status).toBe(401);
    expect(await response.text()).toContain("neither an active API key nor the admin token");
    expect(b.cookies.has("taskrelay_session")).toBe(false);
  });

  it("refuses a sign-in form without its form token or from another site (login CSRF)", async () => {
    const tenant = await createTenant();
    const b = browser();
    const form = await b.page("/dashboard/sign-in");
    const missing = await b.post("/dashboard/sign-in", { credential: tenant.key });
    expect(missing.status).toBe(403);
    const forged = await b.post("/dashboard/sign-in", { form_token: "x".repeat(43), credential: tenant.key });
    expect(forged.status).toBe(403);
    const crossSite = await b.post(
      "/dashboard/sign-in",
      { form_token: formToken(form), credential: tenant.key },
      { origin: "https://evil.test" },
    );
    expect(crossSite.status).toBe(403);
    expect(b.cookies.has("taskrelay_session")).toBe(false);
  });

  it("ignores a forged or unknown session cookie", async () => {
    const b = browser();
    for (const value of [
      "k.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
      "a.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
      "trk_x",
    ]) {
      b.cookies.set("taskrelay_session", value);
      expect((await b.get("/dashboard/runs")).status).toBe(303);
    }
  });

  it("ends a key's sessions when the key is revoked", async () => {
    const tenant = await createTenant();
    const b = await signedIn(tenant.key);
    expect((await b.get("/dashboard/runs")).status).toBe(200);
    await api(`/v1/keys/${tenant.id}`, { method: "DELETE", headers: ADMIN });
    expect((await b.get("/dashboard/runs")).status).toBe(303);
  });

  it("signs the admin in, and out everywhere when the admin token changes", async () => {
    const b = await signedIn(ADMIN_TOKEN);
    expect(b.cookies.get("taskrelay_session")).toMatch(/^a\./);
    expect(await b.page("/dashboard/runs")).toContain(`Signed in as <span data-who="true">admin</span>`);
    b.settings.ADMIN_TOKEN = "a-new-admin-token";
    expect((await b.get("/dashboard/runs")).status).toBe(303);
  });

  it("signs out: the cookie is cleared and the old cookie no longer works", async () => {
    const tenant = await createTenant();
    const b = await signedIn(tenant.key);
    const cookie = b.cookies.get("taskrelay_session") ?? "";
    const csrf = await b.csrf();
    const response = await b.post("/dashboard/sign-out", { csrf });
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe("/dashboard/sign-in?notice=signed_out");
    const cleared = parseSetCookies(response).find((c) => c.name === "taskrelay_session");
    expect(cleared?.attributes.map((a) => a.toLowerCase())).toContain("max-age=0");
    b.cookies.set("taskrelay_session", cookie);
    expect((await b.get("/dashboard/runs")).status).toBe(303);
  });
});

describe("CSRF", () => {
  it("refuses every form without the session's token, with another session's token, or from another origin", async () => {
    const tenant = await createTenant();
    const b = await signedIn(tenant.key);
    const other = await signedIn(tenant.key);
    const csrf = await b.csrf();
    const othersCsrf = await other.csrf();
    expect(othersCsrf).not.toBe(csrf);
    const forms = [
      "/dashboard/sign-out",
      "/dashboard/deliveries/dlv_x/retry",
      "/dashboard/schedules/sch_x/pause",
      "/dashboard/schedules/sch_x/resume",
      "/dashboard/schedules/sch_x/trigger",
    ];
    for (const path of forms) {
      for (const [label, form, headers] of [
        ["no token", {}, {}],
        ["an empty token", { csrf: "" }, {}],
        ["another session's token", { csrf: othersCsrf }, {}],
        ["a cross-site origin", { csrf }, { origin: "https://evil.test" }],
      ] as const) {
        const response = await b.post(path, form, headers);
        expect(response.status, `${path} with ${label}`).toBe(403);
        expect(await response.text()).toContain("not sent from a current dashboard page");
      }
    }
    // Still signed in: the refused sign-out did nothing.
    expect((await b.get("/dashboard/runs")).status).toBe(200);
  });
});

describe("every page", () => {
  it("is not cached or framed, and runs only the script with this response's nonce", async () => {
    const tenant = await createTenant();
    const b = await signedIn(tenant.key);
    const response = await b.get("/dashboard/runs");
    const csp = response.headers.get("content-security-policy") ?? "";
    expect(csp).toMatch(/script-src 'nonce-[A-Za-z0-9_-]+'/);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("form-action 'self'");
    expect(response.headers.get("cache-control")).toBe("no-store");
    expect(response.headers.get("x-frame-options")).toBe("DENY");
    expect(response.headers.get("x-content-type-options")).toBe("nosniff");
    const html = await response.text();
    expect(html.startsWith("<!DOCTYPE html>")).toBe(true);
    expect(html).toContain('<meta name="viewport" content="width=device-width, initial-scale=1"/>');
  });

  it("serves one cacheable stylesheet", async () => {
    const response = await browser().get("/dashboard/style.css?v=1");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/css/);
    expect(response.headers.get("cache-control")).toContain("max-age=86400");
    expect(await response.text()).toContain("@media (max-width:720px)");
  });

  it("answers an unknown dashboard path with a 404 page", async () => {
    const tenant = await createTenant();
    const b = await signedIn(tenant.key);
    const response = await b.get("/dashboard/nothing-here");
    expect(response.status).toBe(404);
    expect(await response.text()).toContain("There is no such page in the dashboard.");
  });
});
