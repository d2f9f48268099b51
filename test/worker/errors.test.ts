import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../../src/index";
import { api, createTenant, expectJson, postJson, RELAY, TEXT_RUN } from "./harness";

interface Envelope {
  error: { code: string; message: string; request_id: string; details: unknown[] };
}

describe("the one error envelope", () => {
  it("answers 400 invalid_json for a body that is not JSON", async () => {
    const tenant = await createTenant();
    const body = await expectJson<Envelope>(
      await api("/v1/runs", {
        method: "POST",
        headers: { ...tenant.auth, "content-type": "application/json" },
        body: "{nope",
      }),
      400,
    );
    expect(body.error.code).toBe("invalid_json");
    expect(Object.keys(body.error).sort()).toEqual(["code", "details", "message", "request_id"]);
  });

  it("answers 415 for a body that is not application/json", async () => {
    const tenant = await createTenant();
    const body = await expectJson<Envelope>(
      await api("/v1/runs", {
        method: "POST",
        headers: { ...tenant.auth, "content-type": "text/plain" },
        body: JSON.stringify(TEXT_RUN),
      }),
      415,
    );
    expect(body.error.code).toBe("unsupported_media_type");
  });

  it("answers 413 for a body over 1 MB", async () => {
    const tenant = await createTenant();
    const body = await expectJson<Envelope>(
      await postJson("/v1/runs", { ...TEXT_RUN, input: "x".repeat(1024 * 1024 + 1) }, tenant.auth),
      413,
    );
    expect(body.error.code).toBe("payload_too_large");
  });

  it("answers 404 not_found for an unknown route, in the envelope", async () => {
    const body = await expectJson<Envelope>(await api("/v2/nothing"), 404);
    expect(body.error).toMatchObject({ code: "not_found", message: "No route GET /v2/nothing." });
  });

  it("echoes the request id in a header and in the error", async () => {
    const response = await api("/v1/runs");
    const body = await expectJson<Envelope>(response, 401);
    expect(response.headers.get("x-request-id")).toBe(body.error.request_id);
  });

  it("lists every zod problem with its path", async () => {
    const tenant = await createTenant();
    const body = await expectJson<Envelope>(
      await postJson("/v1/runs", { processor: 7, input: [], enable_events: "yes" }, tenant.auth),
      422,
    );
    expect(body.error.code).toBe("validation_failed");
    expect(body.error.details).toEqual([
      { path: "processor", message: "processor must be a string, got a number" },
      { path: "input", message: "input must be a string or a JSON object, got an array" },
      { path: "enable_events", message: "enable_events must be true or false, got a string" },
    ]);
  });

  it("never shows an unexpected error's message: 500 internal_error, logged", async () => {
    const ctx = createExecutionContext();
    const response = await worker.fetch(
      new Request(`${RELAY}/healthz`),
      { ...env, DB: undefined as unknown as D1Database },
      ctx,
    );
    const body = await expectJson<Envelope>(response, 500);
    expect(body.error.code).toBe("internal_error");
    expect(body.error.message).not.toMatch(/prepare|undefined|TypeError/);
  });

  it("names a bad setting, never its value", async () => {
    const ctx = createExecutionContext();
    const response = await worker.fetch(
      new Request(`${RELAY}/healthz`),
      { ...env, POLL_TIME_SCALE: "fast-please" },
      ctx,
    );
    const body = await expectJson<Envelope>(response, 500);
    expect(body.error.code).toBe("configuration_error");
    expect(body.error.message).toContain("POLL_TIME_SCALE");
    expect(body.error.message).not.toContain("fast-please");
  });
});

describe("methods, the root, and query parameters", () => {
  it("answers a known path's unsupported method with 405 and Allow, in the envelope", async () => {
    const tenant = await createTenant();
    const put = await api("/v1/runs", { method: "PUT", headers: tenant.auth });
    const body = await expectJson<Envelope>(put, 405);
    expect(body.error.code).toBe("method_not_allowed");
    expect(put.headers.get("allow")?.split(", ").sort()).toEqual(["GET", "HEAD", "POST"]);
    expect(body.error.message).toBe("/v1/runs does not take PUT; it takes GET, POST, HEAD.");

    const del = await api("/v1/runs/run_01JD0Q4M3ZT6B3X9Y8W7V6U5T4/result", { method: "DELETE" });
    await expectJson<Envelope>(del, 405);
    expect(del.headers.get("allow")).toBe("GET, HEAD");
    const webhook = await api("/webhooks/parallel");
    await expectJson<Envelope>(webhook, 405);
    expect(webhook.headers.get("allow")).toBe("POST");
    // An unknown path is still a 404.
    await expectJson<Envelope>(await api("/v1/nothing", { method: "PUT" }), 404);
  });

  it("sends a browser at / to the dashboard and gives an API client an index of links", async () => {
    const browser = await api("/", {
      headers: { accept: "text/html,application/xhtml+xml" },
      redirect: "manual",
    });
    expect(browser.status).toBe(302);
    expect(browser.headers.get("location")).toBe("/dashboard");
    const index = await expectJson<{ name: string; links: Record<string, string> }>(
      await api("/", { headers: { accept: "application/json" } }),
      200,
    );
    expect(index.name).toBe("taskrelay");
    expect(index.links).toMatchObject({
      openapi: `${RELAY}/openapi.json`,
      docs: `${RELAY}/docs`,
      dashboard: `${RELAY}/dashboard`,
      runs: `${RELAY}/v1/runs`,
    });
    await expectJson(await api(new URL(index.links.openapi ?? "").pathname), 200);
  });

  it("takes wait and limit as whole numbers in range, as the document says, in words", async () => {
    const tenant = await createTenant();
    const wait = await expectJson<Envelope>(
      await api("/v1/runs/run_01JD0Q4M3ZT6B3X9Y8W7V6U5T4/result?wait=abc", { headers: tenant.auth }),
      422,
    );
    expect(wait.error.details).toEqual([
      { path: "wait", message: "wait must be a whole number from 0 to 60" },
    ]);
    expect(wait.error.message).not.toMatch(/NaN|expected|received/);
    for (const limit of ["0", "101", "1e1", "0x10", "2.5", "", " 5"]) {
      const page = await api(`/v1/runs?limit=${encodeURIComponent(limit)}`, { headers: tenant.auth });
      const body = await expectJson<Envelope>(page, 422);
      expect(body.error.details, limit).toEqual([
        { path: "limit", message: "limit must be a whole number from 1 to 100" },
      ]);
    }
    await expectJson(await api("/v1/runs?limit=100", { headers: tenant.auth }), 200);
    await expectJson(await api("/v1/runs", { headers: tenant.auth }), 200);
    // wait=0 is the default: no waiting, 404 for an unknown run.
    await expectJson(
      await api("/v1/runs/run_01JD0Q4M3ZT6B3X9Y8W7V6U5T4/result?wait=0", { headers: tenant.auth }),
      404,
    );
  });
});

describe("health and documentation", () => {
  it("answers /healthz when D1 answers", async () => {
    expect(await expectJson(await api("/healthz"), 200)).toMatchObject({ status: "ok" });
  });

  it("serves the OpenAPI document with both security schemes and the error envelope", async () => {
    const doc = await expectJson<{
      openapi: string;
      components: { securitySchemes: Record<string, unknown>; schemas: Record<string, unknown> };
    }>(await api("/openapi.json"), 200);
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.components.securitySchemes).sort()).toEqual(["AdminToken", "ApiKey"]);
    expect(doc.components.schemas).toHaveProperty("Error");
    expect(doc.components.schemas).toHaveProperty("RunRequest");
  });
});
