// For a key's own settings (its signing secret): the admin token, or the key itself. Another key
// is told the target does not exist, exactly as for an unknown id.
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../app-env";
import { findActiveKeyByHash } from "../db/keys";
import { ApiError } from "../errors";
import { hashApiKey } from "../services/keys";
import { bearerToken, sameSecret } from "./auth";

export function requireAdminOrOwnKey() {
  return createMiddleware<AppEnv>(async function requireAdminOrOwnKey(c, next) {
    const token = bearerToken(c.req.header("authorization"));
    if (!token) {
      throw new ApiError(
        "unauthorized",
        "Send the admin token, or this API key itself, as `Authorization: Bearer <token>`.",
      );
    }
    const admin = c.var.services.config.ADMIN_TOKEN;
    if (admin && (await sameSecret(token, admin))) return next();

    const key = await findActiveKeyByHash(c.var.services.db, await hashApiKey(token));
    if (!key)
      throw new ApiError("unauthorized", "This token is neither the admin token nor an active API key.");
    const target = c.req.param("id");
    if (key.id !== target) throw new ApiError("not_found", `No API key ${target}.`);
    c.set("apiKey", key);
    await next();
  });
}
