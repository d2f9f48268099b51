// Bearer authentication: API keys for /v1/runs and friends, the admin token for /v1/keys.
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../app-env";
import { findActiveKeyByHash } from "../db/keys";
import { requireSetting } from "../env";
import { ApiError } from "../errors";
import { hashApiKey } from "../services/keys";

export function bearerToken(header: string | undefined): string | null {
  const match = header?.match(/^Bearer\s+(\S+)\s*$/i);
  return match?.[1] ?? null;
}

export function requireApiKey() {
  return createMiddleware<AppEnv>(async function requireApiKey(c, next) {
    const token = bearerToken(c.req.header("authorization"));
    if (!token) {
      throw new ApiError("unauthorized", "Send your taskrelay API key as `Authorization: Bearer <key>`.");
    }
    const key = await findActiveKeyByHash(c.var.services.db, await hashApiKey(token));
    if (!key) throw new ApiError("unauthorized", "This API key is unknown or has been revoked.");
    c.set("apiKey", key);
    await next();
  });
}

/** An API key (its own data) or the admin token (every key's): `isAdmin` says which. */
export function requireApiKeyOrAdmin() {
  return createMiddleware<AppEnv>(async function requireApiKeyOrAdmin(c, next) {
    const token = bearerToken(c.req.header("authorization"));
    if (!token) {
      throw new ApiError(
        "unauthorized",
        "Send your taskrelay API key, or the admin token, as `Authorization: Bearer <token>`.",
      );
    }
    const admin = c.var.services.config.ADMIN_TOKEN;
    if (admin && (await sameSecret(token, admin))) {
      c.set("isAdmin", true);
      return next();
    }
    const key = await findActiveKeyByHash(c.var.services.db, await hashApiKey(token));
    if (!key)
      throw new ApiError("unauthorized", "This token is neither an active API key nor the admin token.");
    c.set("isAdmin", false);
    c.set("apiKey", key);
    await next();
  });
}

export function requireAdminToken() {
  return createMiddleware<AppEnv>(async function requireAdminToken(c, next) {
    const expected = requireSetting(c.var.services.config, "ADMIN_TOKEN");
    const token = bearerToken(c.req.header("authorization"));
    if (!token || !(await sameSecret(token, expected))) {
      throw new ApiError(
        "unauthorized",
        "This endpoint needs the admin token as `Authorization: Bearer <ADMIN_TOKEN>`.",
      );
    }
    await next();
  });
}

/** Constant-time comparison: both sides are hashed to equal-length digests first. */
export async function sameSecret(given: string, expected: string): Promise<boolean> {
  const encoder = new TextEncoder();
  const [a, b] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(given)),
    crypto.subtle.digest("SHA-256", encoder.encode(expected)),
  ]);
  return crypto.subtle.timingSafeEqual(a, b);
}
