// Dashboard sign-in: an API key or the admin token buys a session; the browser keeps only a random
// token (in an HttpOnly cookie), D1 keeps only its digest. The credential itself is never stored and
// never leaves this function: the session names the key by id.
import {
  type DashboardSessionWithKey,
  deleteDashboardSession,
  deleteExpiredDashboardSessions,
  findLiveDashboardSession,
  insertDashboardSession,
} from "../db/dashboard-sessions";
import { findActiveKeyByHash } from "../db/keys";
import { monthOf, monthResetsAt } from "../db/spend";
import { ApiError } from "../errors";
import { randomToken, sha256Hex } from "../ids";
import { microToUsd } from "../pricing/prices";
import type { ServiceContext } from "./context";
import { addMs } from "./timing";
import type { Viewer } from "./viewer";

export const SESSION_TTL_MS = 12 * 60 * 60 * 1000;

export interface DashboardSession {
  viewer: Viewer;
  /** Who is signed in, for the page header: the key's name and prefix, or "admin". */
  label: string;
  csrfToken: string;
  expiresAt: string;
  /** A key at 80% or more of its monthly budget: what every page says about it (issue 16). */
  budgetNotice?: string | undefined;
}

/**
 * The cookie value is `<kind>.<token>`: `a` for the admin, `k` for a key. The kind picks the digest:
 * SHA-256 for a key's session, HMAC-SHA256 keyed by ADMIN_TOKEN for the admin's (a new admin token
 * makes every admin session's digest unreachable, which signs the admin out everywhere).
 */
async function sessionDigest(ctx: ServiceContext, kind: "a" | "k", token: string): Promise<string | null> {
  if (kind === "k") return sha256Hex(token);
  const admin = ctx.config.ADMIN_TOKEN;
  if (!admin) return null;
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(admin),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(token));
  return [...new Uint8Array(mac)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function parseCookieValue(value: string): { kind: "a" | "k"; token: string } | null {
  const match = /^([ak])\.([A-Za-z0-9_-]{43})$/.exec(value);
  return match ? { kind: match[1] as "a" | "k", token: match[2] as string } : null;
}

/** Constant-time: both sides are hashed to equal-length digests first. */
async function sameSecret(given: string, expected: string): Promise<boolean> {
  const encoder = new TextEncoder();
  const [a, b] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(given)),
    crypto.subtle.digest("SHA-256", encoder.encode(expected)),
  ]);
  return crypto.subtle.timingSafeEqual(a, b);
}

/** Signs in with an API key or the admin token; returns the cookie value and the session. */
export async function signIn(
  ctx: ServiceContext,
  credential: string,
): Promise<{ cookieValue: string; session: DashboardSession }> {
  const given = credential.trim();
  const admin = ctx.config.ADMIN_TOKEN;
  let kind: "a" | "k";
  let apiKeyId: string | null = null;
  let label = "admin";
  if (admin && given && (await sameSecret(given, admin))) {
    kind = "a";
  } else {
    const key = given ? await findActiveKeyByHash(ctx.db, await sha256Hex(given)) : null;
    if (!key) throw new ApiError("unauthorized", "That is neither an active API key nor the admin token.");
    kind = "k";
    apiKeyId = key.id;
    label = `${key.name} (${key.key_prefix}…)`;
  }

  const token = randomToken(32);
  const idHash = (await sessionDigest(ctx, kind, token)) as string;
  const now = ctx.now();
  const row = {
    id_hash: idHash,
    api_key_id: apiKeyId,
    csrf_token: randomToken(32),
    created_at: now.toISOString(),
    expires_at: addMs(now, SESSION_TTL_MS).toISOString(),
  };
  await ctx.db.batch([
    deleteExpiredDashboardSessions(ctx.db, row.created_at),
    insertDashboardSession(ctx.db, row),
  ]);
  ctx.log.info("dashboard.signed_in", { viewer: apiKeyId ? "key" : "admin", key_id: apiKeyId });
  return {
    cookieValue: `${kind}.${token}`,
    session: {
      viewer: apiKeyId ? { kind: "key", apiKeyId } : { kind: "admin" },
      label,
      csrfToken: row.csrf_token,
      expiresAt: row.expires_at,
    },
  };
}

function toSession(row: DashboardSessionWithKey, now: Date): DashboardSession {
  return {
    viewer: row.api_key_id ? { kind: "key", apiKeyId: row.api_key_id } : { kind: "admin" },
    label: row.api_key_id ? `${row.key_name} (${row.key_prefix}…)` : "admin",
    csrfToken: row.csrf_token,
    expiresAt: row.expires_at,
    budgetNotice: budgetNotice(row, now),
  };
}

/** The share of the budget at which the dashboard starts saying so. */
export const BUDGET_NOTICE_SHARE = 0.8;

/** At 80%: how much is spent; at 100%: that runs are refused until the month resets. */
export function budgetNotice(
  row: Pick<DashboardSessionWithKey, "monthly_budget_micro_usd" | "budget_month" | "budget_spent_micro_usd">,
  now: Date,
): string | undefined {
  const limit = row.monthly_budget_micro_usd;
  if (limit === null) return undefined;
  const spent = row.budget_month === monthOf(now) ? (row.budget_spent_micro_usd ?? 0) : 0;
  if (spent < limit * BUDGET_NOTICE_SHARE) return undefined;
  const share = limit > 0 ? Math.floor((spent / limit) * 100) : 100;
  const amounts = `This key has spent $${microToUsd(spent)} of its $${microToUsd(limit)} monthly budget (${share}%)`;
  return spent >= limit
    ? `${amounts}: new runs are refused until the month resets at ${monthResetsAt(now)}.`
    : `${amounts}: a run that would pass it is refused.`;
}

/** The live session of a cookie value, or null (unknown, expired, signed out, key revoked, admin token changed). */
export async function findSession(
  ctx: ServiceContext,
  cookieValue: string | undefined,
): Promise<DashboardSession | null> {
  const parsed = cookieValue ? parseCookieValue(cookieValue) : null;
  if (!parsed) return null;
  const digest = await sessionDigest(ctx, parsed.kind, parsed.token);
  if (!digest) return null;
  const row = await findLiveDashboardSession(ctx.db, digest, ctx.now().toISOString());
  // The kind in the cookie must match the row: an admin digest never stands for a key, nor the reverse.
  if (!row || (parsed.kind === "a") !== (row.api_key_id === null)) return null;
  return toSession(row, ctx.now());
}

export async function signOut(ctx: ServiceContext, cookieValue: string | undefined): Promise<void> {
  const parsed = cookieValue ? parseCookieValue(cookieValue) : null;
  if (!parsed) return;
  const digest = await sessionDigest(ctx, parsed.kind, parsed.token);
  if (digest) await deleteDashboardSession(ctx.db, digest).run();
  ctx.log.info("dashboard.signed_out", {});
}

/** A form's CSRF token against the session's, in constant time. */
export function csrfTokenMatches(session: DashboardSession, given: unknown): Promise<boolean> {
  if (typeof given !== "string" || given.length === 0) return Promise.resolve(false);
  return sameSecret(given, session.csrfToken);
}
