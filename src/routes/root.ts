import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../app";

/** What GET / links to. */
const LINKS = {
  openapi: "/openapi.json",
  docs: "/docs",
  dashboard: "/dashboard",
  health: "/healthz",
  runs: "/v1/runs",
  schedules: "/v1/schedules",
  deliveries: "/v1/deliveries",
};

export const rootRoute = createRoute({
  method: "get",
  path: "/",
  summary: "Where to start",
  description:
    "A browser (`Accept: text/html`) is redirected to the dashboard; any other client gets a small index of links.",
  responses: {
    200: {
      description: "The index: the API reference, the dashboard and the main collections.",
      content: {
        "application/json": {
          schema: z
            .object({
              name: z.literal("taskrelay"),
              description: z.string().openapi({ description: "What this service does." }),
              links: z.record(z.string(), z.string()).openapi({
                description: "Absolute URLs, by name.",
                example: { openapi: "https://taskrelay.example.workers.dev/openapi.json" },
              }),
            })
            .openapi("Index"),
        },
      },
    },
    302: { description: "A browser goes to /dashboard.", headers: z.object({ location: z.string() }) },
  },
});

export function registerRoot(app: App) {
  app.openapi(rootRoute, (c) => {
    c.header("vary", "accept");
    if (c.req.header("accept")?.includes("text/html")) return c.redirect("/dashboard", 302);
    const origin = new URL(c.req.url).origin;
    return c.json(
      {
        name: "taskrelay" as const,
        description: "Parallel Task API runs from HTTP, results by signed callback, recurring schedules.",
        links: Object.fromEntries(Object.entries(LINKS).map(([name, path]) => [name, `${origin}${path}`])),
      },
      200,
    );
  });
}
