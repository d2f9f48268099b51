// Every workerd test file: the real migrations on a fresh D1, D1's documented limits enforced on
// every query (d1-limits.ts; each call into the Worker's fetch or scheduled handler is one
// invocation counted against SUBREQUEST_BUDGET), and MSW at the HTTP boundary that fails any request
// no handler expects (so no test talks to the internet by accident).

import { applyD1Migrations } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { FetchInterceptor } from "@mswjs/interceptors/fetch";
import { defineNetwork, InterceptorSource } from "msw/experimental";
import { afterAll, afterEach, beforeAll } from "vitest";
import worker from "../../src/index";
import { asInvocation, limitedDatabase } from "./d1-limits";

await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);
// The Worker's handlers receive this same env object, so every path goes through the double.
env.DB = limitedDatabase(env.DB);
const budgetOf = (bindings: { SUBREQUEST_BUDGET?: string } | undefined) =>
  Number(bindings?.SUBREQUEST_BUDGET ?? 50);
const { fetch, scheduled } = worker;
worker.fetch = (request, bindings, execution) =>
  asInvocation(`fetch ${new URL(request.url).pathname}`, budgetOf(bindings), () =>
    fetch(request, bindings, execution),
  );
worker.scheduled = (controller, bindings, execution) =>
  asInvocation("scheduled", budgetOf(bindings), () => scheduled(controller, bindings, execution));

export const network = defineNetwork({
  sources: [new InterceptorSource({ interceptors: [new FetchInterceptor()] })],
  handlers: [],
  onUnhandledFrame: "error",
  context: { quiet: true },
});

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(() => network.disable());
