import { createRoute } from "@hono/zod-openapi";
import type { App } from "../app";
import { validationFailed } from "../errors";
import { requireApiKeyOrAdmin } from "../middleware/auth";
import { ADMIN_SECURITY, API_KEY_SECURITY, errors } from "../schemas/common";
import { UsageQuerySchema, UsageSchema } from "../schemas/usage";
import { getUsage, USAGE_MAX_DAYS } from "../services/spend";

export const usageRoute = createRoute({
  method: "get",
  path: "/v1/usage",
  summary: "Runs and spend, and the monthly budget",
  description:
    "Runs Parallel accepted and what they cost, per day, processor, schedule or batch over [from, to] (UTC days), " +
    "with totals and the key's budget this month. Read from a rollup kept as runs are accepted, so it costs the " +
    "same whatever the number of runs. An API key sees its own usage; the admin token every key's, or one with `key_id`.",
  security: [...API_KEY_SECURITY, ...ADMIN_SECURITY],
  middleware: [requireApiKeyOrAdmin()] as const,
  request: { query: UsageQuerySchema },
  responses: {
    200: { description: "Usage and budget.", content: { "application/json": { schema: UsageSchema } } },
    401: errors[401],
    404: errors[404],
    422: errors[422],
    500: errors[500],
  },
});

const DAY_MS = 24 * 60 * 60 * 1000;

export function registerUsage(app: App) {
  app.openapi(usageRoute, async (c) => {
    const query = c.req.valid("query");
    const services = c.var.services;
    const today = services.now().toISOString().slice(0, 10);
    const from = query.from ?? `${today.slice(0, 7)}-01`;
    const to = query.to ?? today;
    const span = (Date.parse(to) - Date.parse(from)) / DAY_MS;
    if (span < 0) throw validationFailed([{ path: "to", message: "to must not be before from" }]);
    if (span >= USAGE_MAX_DAYS) {
      throw validationFailed([{ path: "to", message: `to must be within ${USAGE_MAX_DAYS} days of from` }]);
    }
    if (!c.var.isAdmin && query.key_id !== undefined && query.key_id !== c.var.apiKey.id) {
      throw validationFailed([
        { path: "key_id", message: "key_id is for the admin token; a key sees its own usage" },
      ]);
    }
    const apiKeyId = c.var.isAdmin ? (query.key_id ?? null) : c.var.apiKey.id;
    const report = await getUsage(services, { apiKeyId, from, to, groupBy: query.group_by ?? "day" });
    return c.json(report, 200);
  });
}
