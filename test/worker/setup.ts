import { FetchInterceptor } from "@mswjs/interceptors/fetch";
import { defineNetwork, InterceptorSource } from "msw/experimental";
import { afterAll, afterEach, beforeAll } from "vitest";
export const server = defineNetwork({ sources: [new InterceptorSource({ interceptors: [new FetchInterceptor()] })], handlers: [] , onUnhandledFrame: "error"} as never);
beforeAll(() => server.enable());
afterEach(() => server.resetHandlers());
afterAll(() => server.disable());
