// When a schedule fires: five-field cron read in an IANA time zone, with croner doing the calendar
// and daylight-saving arithmetic. A fixed time that falls in a spring-forward gap (02:30 on the day
// New York skips 02:00–03:00) fires at the first valid time after the gap; a fixed time that occurs
// twice on a fall-back day fires once, at its first occurrence. Interval patterns (`*/15 * * * *`)
// follow the real clock: they skip the missing times and fire on both passes of a repeated hour.
import { Cron } from "croner";
import type { ErrorDetail } from "../errors";

/** The cron's fields, for the message that says what a field-count problem is. */
const FIVE_FIELDS = "minute hour day-of-month month day-of-week";

/**
 * Every problem with a cron expression, at `path`. Only five fields: taskrelay fires on minutes.
 * `now` is where "never fires" is judged from.
 */
export function checkCron(cron: string, now: Date, path = "cron"): ErrorDetail[] {
  const fields = cron.trim().split(/\s+/).filter(Boolean);
  if (fields.length !== 5) {
    const seconds = fields.length === 6 ? " (a six-field expression with seconds is not supported)" : "";
    return [
      {
        path,
        message: `expected a five-field cron expression (${FIVE_FIELDS}), e.g. "30 9 * * 1-5"; got ${fields.length} field${fields.length === 1 ? "" : "s"}${seconds}`,
      },
    ];
  }
  try {
    const job = cronFor(cron, "UTC");
    // A valid pattern that matches no date (e.g. 31 February) would never fire.
    if (job.nextRun(now) === null) return [{ path, message: "this cron expression never fires" }];
  } catch (error) {
    return [{ path, message: `not a valid cron expression: ${cronMessage(error)}` }];
  }
  return [];
}

/** croner prefixes its messages with the class name; users need only the reason. */
function cronMessage(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.replace(/^Cron(Pattern|Date)?:\s*/, "");
}

/**
 * The time zone's name as it is stored, or null when the runtime does not know it. The name is
 * kept as given, with its case corrected when the runtime spells it the same way (`utc` → `UTC`):
 * the runtime's own canonical name may be a legacy alias (workerd calls Asia/Kolkata Asia/Calcutta).
 * Fixed UTC offsets (`+05:30`) are refused: they have no daylight-saving rules and are not IANA names.
 */
export function canonicalTimeZone(name: string): string | null {
  if (!/^[A-Za-z][A-Za-z0-9_+\-/]*$/.test(name)) return null;
  try {
    const resolved = new Intl.DateTimeFormat("en-US", { timeZone: name }).resolvedOptions().timeZone;
    if (/^[+-]/.test(resolved)) return null;
    return resolved.toLowerCase() === name.toLowerCase() ? resolved : name;
  } catch {
    return null;
  }
}

export function checkTimeZone(name: string, path = "timezone"): ErrorDetail[] {
  if (canonicalTimeZone(name)) return [];
  return [
    {
      path,
      message: `unknown time zone "${name}"; use an IANA name such as "Europe/London", "America/New_York" or "UTC"`,
    },
  ];
}

function cronFor(cron: string, timezone: string): Cron {
  return new Cron(cron.trim(), { timezone, mode: "5-part", paused: true });
}

/** The first `count` occurrences strictly after `after`. Fewer when the cron runs out. */
export function nextOccurrences(cron: string, timezone: string, after: Date, count: number): Date[] {
  return cronFor(cron, timezone).nextRuns(count, after);
}

/** The first occurrence strictly after `after`, or null when there is none. */
export function nextOccurrence(cron: string, timezone: string, after: Date): Date | null {
  return cronFor(cron, timezone).nextRun(after);
}

/** The latest occurrence at or before `at`, or null when there is none. */
export function latestOccurrence(cron: string, timezone: string, at: Date): Date | null {
  return cronFor(cron, timezone).previousRuns(1, new Date(at.getTime() + 1))[0] ?? null;
}

/** A moment as local wall-clock time with its offset: `2026-03-08T03:00:00-04:00`. */
export function formatInZone(at: Date, timezone: string): string {
  const parts = zonedParts(at, timezone);
  const offset = parts.offset === "GMT" ? "+00:00" : parts.offset.replace(/^GMT/, "");
  return `${parts.date}T${parts.time}${offset}`;
}

/** The calendar date of a moment in a time zone: `2026-03-08`. */
export function dateInZone(at: Date, timezone: string): string {
  return zonedParts(at, timezone).date;
}

function zonedParts(at: Date, timezone: string): { date: string; time: string; offset: string } {
  const format = new Intl.DateTimeFormat("en-US", {
    timeZone: timezone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
    timeZoneName: "longOffset",
  });
  const part = Object.fromEntries(format.formatToParts(at).map((p) => [p.type, p.value]));
  return {
    date: `${part.year}-${part.month}-${part.day}`,
    time: `${part.hour}:${part.minute}:${part.second}`,
    offset: part.timeZoneName ?? "GMT",
  };
}
