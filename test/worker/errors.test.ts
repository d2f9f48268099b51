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
    expect((body.error.details as Array<{ path: string }>).map((d) => d.path).sort()).toEqual([
      "enable_events",
      "input",
      "processor",
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
