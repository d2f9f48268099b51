// Every workerd test file: the real migrations on a fresh D1, and MSW at the HTTP boundary that
// fails any request no handler expects (so no test talks to the internet by accident).

import { applyD1Migrations } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { FetchInterceptor } from "@mswjs/interceptors/fetch";
import { defineNetwork, InterceptorSource } from "msw/experimental";
import { afterAll, afterEach, beforeAll } from "vitest";

await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);

export const network = defineNetwork({
  sources: [new InterceptorSource({ interceptors: [new FetchInterceptor()] })],
  handlers: [],
  onUnhandledFrame: "error",
  context: { quiet: true },
});

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(() => network.disable());
