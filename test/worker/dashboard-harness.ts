// For the dashboard tests: a small browser over the Worker's fetch handler that keeps cookies (by
// name; every dashboard cookie has Path=/dashboard), signs in through the real form, and reads the
// CSRF token out of a rendered page.
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { expect } from "vitest";
import worker from "../../src/index";
import { RELAY } from "./harness";

export interface SetCookie {
  name: string;
  value: string;
  attributes: string[];
}

export function parseSetCookies(response: Response): SetCookie[] {
  return response.headers.getSetCookie().map((line) => {
    const [pair = "", ...attributes] = line.split(";").map((part) => part.trim());
    const eq = pair.indexOf("=");
    return { name: pair.slice(0, eq), value: decodeURIComponent(pair.slice(eq + 1)), attributes };
  });
}

export interface Browser {
  cookies: Map<string, string>;
  /** Settings for the Worker's env, e.g. another ADMIN_TOKEN. */
  settings: Record<string, string>;
  get(path: string, headers?: Record<string, string>): Promise<Response>;
  post(path: string, form: Record<string, string>, headers?: Record<string, string>): Promise<Response>;
  /** GET a page, expecting 200 HTML; returns its text. */
  page(path: string): Promise<string>;
  /** The CSRF token of the forms on a page. */
  csrf(path?: string): Promise<string>;
}

export function browser(settings: Record<string, string> = {}): Browser {
  const cookies = new Map<string, string>();
  const send = async (path: string, init: RequestInit) => {
    const headers = new Headers(init.headers);
    if (cookies.size > 0) {
      headers.set(
        "cookie",
        [...cookies].map(([name, value]) => `${name}=${encodeURIComponent(value)}`).join("; "),
      );
    }
    const response = await worker.fetch(
      new Request(`${RELAY}${path}`, { ...init, headers, redirect: "manual" }),
      { ...env, ...b.settings },
      createExecutionContext(),
    );
    for (const cookie of parseSetCookies(response)) {
      const expired = cookie.attributes.some((a) => /^max-age=0$/i.test(a));
      if (expired || cookie.value === "") cookies.delete(cookie.name);
      else cookies.set(cookie.name, cookie.value);
    }
    return response;
  };
  const b: Browser = {
    cookies,
    settings,
    get: (path, headers = {}) => send(path, { headers }),
    post: (path, form, headers = {}) =>
      send(path, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", origin: RELAY, ...headers },
        body: new URLSearchParams(form).toString(),
      }),
    page: async (path) => {
      const response = await b.get(path);
      const text = await response.text();
      expect(response.status, `GET ${path}: ${text.slice(0, 500)}`).toBe(200);
      expect(response.headers.get("content-type")).toMatch(/^text\/html/);
      return text;
    },
    csrf: async (path = "/dashboard/runs") => {
      const match = /name="csrf" value="([^"]+)"/.exec(await b.page(path));
      expect(match, `a CSRF field on ${path}`).not.toBeNull();
      return match?.[1] ?? "";
    },
  };
  return b;
}

export function formToken(html: string): string {
  return /name="form_token" value="([^"]+)"/.exec(html)?.[1] ?? "";
}

/** Signs in through the sign-in form; returns the response to the form's POST. */
export async function signIn(b: Browser, credential: string): Promise<Response> {
  const form = await b.page("/dashboard/sign-in");
  return b.post("/dashboard/sign-in", { form_token: formToken(form), credential });
}

/** A browser signed in with this credential (an API key or the admin token). */
export async function signedIn(credential: string, settings: Record<string, string> = {}): Promise<Browser> {
  const b = browser(settings);
  const response = await signIn(b, credential);
  expect(response.status, await response.clone().text()).toBe(303);
  expect(response.headers.get("location")).toBe("/dashboard");
  return b;
}

/** Every id-like value of an attribute on a page, e.g. the runs listed. */
export function attributeValues(html: string, attribute: string): string[] {
  return [...html.matchAll(new RegExp(`${attribute}="([^"]+)"`, "g"))].map((m) => m[1] as string);
}
