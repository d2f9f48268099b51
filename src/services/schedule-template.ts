// Placeholders in a schedule's input: every string value of the input (a string input, or strings
// anywhere inside a JSON input; not object keys) may say {{scheduled_at}}, {{scheduled_date}},
// {{last_success_at}} or {{last_success_date}}. *_at are ISO 8601 UTC instants; *_date are calendar
// dates (YYYY-MM-DD) in the schedule's time zone, which is what "today" means to its owner.
// The last_success_* values are empty until the schedule's first run completes with a result, so
// they may carry a fallback for that first run: {{last_success_date|the start of the month}}.
import type { ErrorDetail } from "../errors";
import { dateInZone } from "./schedule-times";

export const PLACEHOLDERS = [
  "scheduled_at",
  "scheduled_date",
  "last_success_at",
  "last_success_date",
] as const;
type Placeholder = (typeof PLACEHOLDERS)[number];
export type PlaceholderValues = Record<Placeholder, string>;

/** The placeholders that are empty until the first success: the only ones a fallback makes sense for. */
const MAY_BE_EMPTY: ReadonlySet<string> = new Set<Placeholder>(["last_success_at", "last_success_date"]);

/** `{{ name }}` or `{{ name | fallback text }}`; spaces around the name and the fallback are not part of them. */
const PLACEHOLDER = /\{\{\s*([^{}|]*?)\s*(?:\|\s*([^{}]*?)\s*)?\}\}/g;

type Input = string | Record<string, unknown>;

/** Every unknown `{{…}}`, and every fallback that cannot apply, located by JSON path under `path`. */
export function checkPlaceholders(input: Input, path: string): ErrorDetail[] {
  const problems: ErrorDetail[] = [];
  visitStrings(input, path, (text, at) => {
    for (const match of text.matchAll(PLACEHOLDER)) {
      const message = placeholderProblem(match[1] ?? "", match[2]);
      if (message) problems.push({ path: at, message });
    }
  });
  return problems;
}

function placeholderProblem(name: string, fallback: string | undefined): string | null {
  if (!(PLACEHOLDERS as readonly string[]).includes(name)) {
    return `unknown placeholder {{${name}}}; the input may use ${PLACEHOLDERS.map((p) => `{{${p}}}`).join(", ")}`;
  }
  if (fallback === undefined) return null;
  if (!MAY_BE_EMPTY.has(name)) {
    return `{{${name}|${fallback}}} never uses its fallback: ${name} always has a value (only {{last_success_at|…}} and {{last_success_date|…}} are empty, before the first success)`;
  }
  if (fallback === "") {
    return `{{${name}|}} has an empty fallback; write the text to use before the first success, e.g. {{${name}|the start of the month}}, or drop the |`;
  }
  return null;
}

export function placeholderValues(
  scheduledAt: Date,
  lastSuccessAt: string | null,
  timezone: string,
): PlaceholderValues {
  const lastSuccess = lastSuccessAt ? new Date(lastSuccessAt) : null;
  return {
    scheduled_at: scheduledAt.toISOString(),
    scheduled_date: dateInZone(scheduledAt, timezone),
    last_success_at: lastSuccess ? lastSuccess.toISOString() : "",
    last_success_date: lastSuccess ? dateInZone(lastSuccess, timezone) : "",
  };
}

/**
 * The input with every placeholder replaced (by its fallback while its value is empty); unknown ones
 * were refused when the schedule was saved.
 */
export function renderInput<T extends Input>(input: T, values: PlaceholderValues): T {
  return renderValue(input, values) as T;
}

function renderValue(value: unknown, values: PlaceholderValues): unknown {
  if (typeof value === "string") {
    return value.replace(PLACEHOLDER, (whole, name: string, fallback: string | undefined) => {
      if (!Object.hasOwn(values, name)) return whole;
      const filled = values[name as Placeholder];
      return filled === "" && fallback !== undefined ? fallback : filled;
    });
  }
  if (Array.isArray(value)) return value.map((item) => renderValue(item, values));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, renderValue(item, values)]));
  }
  return value;
}

function visitStrings(value: unknown, path: string, visit: (text: string, path: string) => void): void {
  if (typeof value === "string") visit(value, path);
  else if (value && typeof value === "object") {
    // Arrays too: their entries are at paths like input.queries.0.
    for (const [key, item] of Object.entries(value)) visitStrings(item, `${path}.${key}`, visit);
  }
}
