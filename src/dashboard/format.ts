// How times and values read on the dashboard. Pure functions of their inputs (the clock is passed in).
import type { RunSummary } from "../db/runs";
import { toRunView } from "../services/run-view";

/** "42 s ago", "3 min ago", "5 h ago", "2 d ago"; "in 4 min" for the future. */
export function relativeTime(iso: string, now: Date): string {
  const diff = Date.parse(iso) - now.getTime();
  const seconds = Math.round(Math.abs(diff) / 1000);
  const amount =
    seconds < 60
      ? `${seconds} s`
      : seconds < 3600
        ? `${Math.floor(seconds / 60)} min`
        : seconds < 86_400
          ? `${Math.floor(seconds / 3600)} h`
          : `${Math.floor(seconds / 86_400)} d`;
  return diff > 0 ? `in ${amount}` : `${amount} ago`;
}

/** `2026-11-28 10:31:00 UTC`. */
export function utcTime(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;
}

/** `Mon 30 Nov 2026, 09:00 GMT-5`: wall-clock time in the schedule's own zone. */
export function zonedTime(iso: string, timeZone: string): string {
  try {
    return new Intl.DateTimeFormat("en-GB", {
      timeZone,
      weekday: "short",
      day: "numeric",
      month: "short",
      year: "numeric",
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23",
      timeZoneName: "shortOffset",
    }).format(new Date(iso));
  } catch {
    return utcTime(iso);
  }
}

/** A run's input in one line, for lists. */
export function inputPreview(input: unknown, max = 90): string {
  const text = typeof input === "string" ? input : JSON.stringify(input);
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** Only http(s) URLs become links; anything else (javascript:, data:…) is shown as text. */
export function safeHttpUrl(value: unknown): string | null {
  if (typeof value !== "string") return null;
  try {
    const url = new URL(value);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch {
    return null;
  }
}

/** The host a citation comes from, without "www." ("imf.org"); null for anything but an http(s) URL. */
export function hostOf(value: unknown): string | null {
  const url = safeHttpUrl(value);
  return url ? new URL(url).hostname.replace(/^www\./, "") : null;
}

/** A path inside the dashboard to come back to after a form, or the fallback (never another site). */
export function dashboardPath(value: unknown, fallback: string): string {
  if (typeof value !== "string") return fallback;
  return /^\/dashboard\/[A-Za-z0-9_\-/?=&%.]*$/.test(value) && !value.includes("//") ? value : fallback;
}

/** A cost in USD: cents for whole-cent amounts, else as many decimals as it has ($0.005). */
export function usd(amount: number): string {
  const cents = Math.round(amount * 100);
  if (Math.abs(amount * 100 - cents) < 1e-9) return `$${(cents / 100).toFixed(2)}`;
  return `$${amount.toFixed(6).replace(/0+$/, "")}`;
}

/** What a run costs, as the API says it. */
export function runCost(run: RunSummary): string {
  return usd(toRunView(run).cost_usd);
}
