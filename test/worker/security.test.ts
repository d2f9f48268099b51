// One security suite, run against every authenticated route: no key, a wrong key, a revoked key,
// and another key's resource. Another key's resource answers exactly as an unknown id.
import { describe, expect, it } from "vitest";
import { createApp } from "../../src/app";
import { ADMIN, api, createTenant, expectJson, fakeParallel, postJson, TEXT_RUN } from "./harness";

interface RouteCase {
  method: string;
  path: (ids: { run: string }) => string;
  body?: unknown;
}

const RUN_ROUTES: RouteCase[] = [
  { method: "POST", path: () => "/v1/runs", body: TEXT_RUN },
  { method: "GET", path: () => "/v1/runs" },
  { method: "GET", path: ({ run }) => `/v1/runs/${run}` },
  { method: "GET", path: ({ run }) => `/v1/runs/${run}/input` },
  { method: "GET", path: ({ run }) => `/v1/runs/${run}/result` },
  { method: "GET", path: ({ run }) => `/v1/runs/${run}/timeline` },
  { method: "GET", path: ({ run }) => `/v1/runs/${run}/deliveries` },
  { method: "GET", path: ({ run }) => `/v1/runs/${run}/progress` },
  { method: "GET", path: () => "/v1/deliveries" },
  { method: "POST", path: () => "/v1/deliveries/dlv_x/retry" },
  {
    method: "POST",
    path: () => "/v1/schedules",
    body: { name: "daily", cron: "0 9 * * *", timezone: "UTC", template: TEXT_RUN },
  },
  { method: "GET", path: () => "/v1/schedules" },
  { method: "GET", path: () => "/v1/schedules/sch_x" },
  { method: "PATCH", path: () => "/v1/schedules/sch_x", body: { enabled: false } },
  { method: "DELETE", path: () => "/v1/schedules/sch_x" },
  { method: "POST", path: () => "/v1/schedules/sch_x/trigger" },
  { method: "GET", path: () => "/v1/schedules/sch_x/runs" },
  { method: "GET", path: () => "/v1/schedules/sch_x/occurrences" },
];

function send(route: RouteCase, ids: { run: string }, headers: Record<string, string>) {
  const init: RequestInit = { method: route.method, headers: { ...headers } };
  if (route.body) {
    init.body = JSON.stringify(route.body);
    init.headers = { ...headers, "content-type": "application/json" };
  }
  return api(route.path(ids), init);
}

describe("every API-key route", async () => {
  const owner = await createTenant("owner");
  const revoked = await createTenant("revoked");
  await api(`/v1/keys/${revoked.id}`, { method: "DELETE", headers: ADMIN });

  const cases: Array<[string, Record<string, string>]> = [
    ["no Authorization header", {}],
    ["a non-Bearer scheme", { authorization: `Basic ${btoa("a:b")}` }],
    ["an unknown key", { authorization: "Bearer trk_unknown" }],
    ["a revoked key", revoked.auth],
    ["the admin token", ADMIN],
  ];

  for (const route of RUN_ROUTES) {
    it.each(cases)(
      `${route.method} ${route.path({ run: ":id" })} refuses %s with 401`,
      async (_, headers) => {
        fakeParallel();
        const body = await expectJson<{ error: { code: string; request_id: string } }>(
          await send(route, { run: "run_x" }, headers),
          401,
        );
        expect(body.error.code).toBe("unauthorized");
        expect(body.error.request_id).toMatch(/^req_/);
      },
    );
  }

  it("answers another key's run exactly as an unknown id", async () => {
    fakeParallel();
    const intruder = await createTenant("intruder");
    const run = await expectJson<{ id: string }>(await postJson("/v1/runs", TEXT_RUN, owner.auth), 202);
    for (const route of RUN_ROUTES.filter((r) => r.path({ run: "X" }).includes("X"))) {
      const theirs = await expectJson<{ error: { code: string; message: string } }>(
        await send(route, { run: run.id }, intruder.auth),
        404,
      );
      const unknown = await expectJson<{ error: { code: string; message: string } }>(
        await send(route, { run: "run_01M8GW000000000000000000XX" }, intruder.auth),
        404,
      );
      expect(theirs.error.code).toBe("not_found");
      expect(theirs.error.message.replace(run.id, "ID")).toBe(
        unknown.error.message.replace("run_01M8GW000000000000000000XX", "ID"),
      );
    }
    const list = await expectJson<{ data: Array<{ id: string }> }>(
      await api("/v1/runs", { headers: intruder.auth }),
      200,
    );
    expect(list.data).toEqual([]);
  });

  it("documents every route it serves in /openapi.json with its error responses", async () => {
    const doc = await expectJson<{
      paths: Record<string, Record<string, { responses: Record<string, unknown>; security?: unknown }>>;
    }>(await api("/openapi.json"), 200);
    const app = createApp();
    const served = app.routes
      .filter(
        (r) =>
          r.method !== "ALL" &&
          !["/openapi.json", "/docs", "/favicon.ico"].includes(r.path) &&
          !r.path.startsWith("/dashboard"),
      )
      .map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:(\w+)/g, "{$1}")}`);
    for (const route of new Set(served)) {
      const [method = "", path = ""] = route.split(" ");
      const operation = doc.paths[path]?.[method];
      expect(operation, `${route} is not documented`).toBeDefined();
      if (path.startsWith("/v1/")) {
        expect(Object.keys(operation?.responses ?? {}), `${route} documents no 401`).toContain("401");
        expect(operation?.security, `${route} names no security scheme`).toBeDefined();
      }
    }
  });
});
