// The dashboard's guards: security headers on every page, the session cookie on every page and form,
// and a CSRF check on every POST (the session's token in the form, and a same-origin Origin header).
import { getCookie, setCookie } from "hono/cookie";
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../app-env";
import { ApiError } from "../errors";
import { randomToken } from "../ids";
import { csrfTokenMatches, type DashboardSession, findSession } from "../services/dashboard-sessions";

export interface DashboardEnv {
  Bindings: AppEnv["Bindings"];
  Variables: AppEnv["Variables"] & {
    /** Set by requireSession. */
    session: DashboardSession;
    /** The CSP nonce of this response's inline script. */
    nonce: string;
  };
}

export const DASHBOARD_PATH = "/dashboard";
export const SESSION_COOKIE = "taskrelay_session";
/** Double-submit token of the sign-in form (there is no session yet to bind it to). */
export const SIGN_IN_COOKIE = "taskrelay_sign_in";
export const SIGN_IN_PATH = `${DASHBOARD_PATH}/sign-in`;

/**
 * HttpOnly (no script reads it), Secure (https only; browsers treat http://localhost and 127.0.0.1
 * as secure, so the local stack works), SameSite=Strict (never sent with a request another site
 * starts), and scoped to the dashboard's paths.
 */
const COOKIE_FLAGS = { httpOnly: true, secure: true, sameSite: "Strict", path: DASHBOARD_PATH } as const;

export function setSessionCookie(c: Parameters<typeof setCookie>[0], value: string, maxAgeSeconds: number) {
  setCookie(c, SESSION_COOKIE, value, { ...COOKIE_FLAGS, maxAge: maxAgeSeconds });
}

export function clearSessionCookie(c: Parameters<typeof setCookie>[0]) {
  setCookie(c, SESSION_COOKIE, "", { ...COOKIE_FLAGS, maxAge: 0 });
}

/** A fresh sign-in form token, set as a short-lived cookie; the form carries the same value. */
export function issueSignInToken(c: Parameters<typeof setCookie>[0]): string {
  const token = randomToken(32);
  setCookie(c, SIGN_IN_COOKIE, token, { ...COOKIE_FLAGS, maxAge: 15 * 60 });
  return token;
}

export function signInTokenMatches(c: Parameters<typeof getCookie>[0], given: unknown): boolean {
  const expected = getCookie(c, SIGN_IN_COOKIE);
  return typeof given === "string" && !!expected && given.length === expected.length && given === expected;
}

export function sessionCookie(c: Parameters<typeof getCookie>[0]): string | undefined {
  return getCookie(c, SESSION_COOKIE);
}

/**
 * Every dashboard response: not cached, not framed, no referrer to other sites, and a CSP that allows
 * this origin's stylesheet and only the inline script carrying this response's nonce.
 */
export function dashboardHeaders() {
  return createMiddleware<DashboardEnv>(async function dashboardHeaders(c, next) {
    const nonce = randomToken(16);
    c.set("nonce", nonce);
    await next();
    c.header(
      "content-security-policy",
      [
        "default-src 'none'",
        `script-src 'nonce-${nonce}'`,
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
      ].join("; "),
    );
    if (!c.res.headers.get("cache-control")) c.header("cache-control", "no-store");
    c.header("x-frame-options", "DENY");
    c.header("x-content-type-options", "nosniff");
    c.header("referrer-policy", "same-origin");
  });
}

/**
 * A page or form needs a live session: without one a page redirects to sign-in, anything else
 * (a form post, the progress stream) is 401.
 */
export function requireSession() {
  return createMiddleware<DashboardEnv>(async function requireSession(c, next) {
    const session = await findSession(c.var.services, sessionCookie(c));
    if (!session) {
      if (c.req.method === "GET" && !c.req.path.endsWith("/progress")) return c.redirect(SIGN_IN_PATH, 303);
      throw new ApiError("unauthorized", "Sign in to the dashboard first.");
    }
    c.set("session", session);
    await next();
  });
}

/** True when the request's Origin, if the browser sent one, is this site's. */
export function sameOrigin(c: { req: { url: string; header(name: string): string | undefined } }): boolean {
  const origin = c.req.header("origin");
  return !origin || origin === new URL(c.req.url).origin;
}

/** A POST form of a signed-in page: the session's CSRF token must come with it, from this origin. */
export function requireCsrf() {
  return createMiddleware<DashboardEnv>(async function requireCsrf(c, next) {
    const form = await c.req.parseBody();
    if (!sameOrigin(c) || !(await csrfTokenMatches(c.var.session, form.csrf))) {
      c.var.services.log.warn("dashboard.csrf_refused", { path: c.req.path });
      throw new ApiError(
        "forbidden",
        "This form was not sent from a current dashboard page. Reload the page and try again.",
      );
    }
    await next();
  });
}
