// Placeholders in a schedule's input: every string value of the input (a string input, or strings
// anywhere inside a JSON input; not object keys) may say {{scheduled_at}}, {{scheduled_date}},
// {{last_success_at}} or {{last_success_date}}. *_at are ISO 8601 UTC instants; *_date are calendar
// dates (YYYY-MM-DD) in the schedule's time zone, which is what "today" means to its owner.
// The last_success_* values are empty until the schedule's first run completes with a result.
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

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;

type Input = string | Record<string, unknown>;

/** Every unknown `{{…}}` in the input's strings, located by JSON path under `path`. */
export function checkPlaceholders(input: Input, path: string): ErrorDetail[] {
  const problems: ErrorDetail[] = [];
  visitStrings(input, path, (text, at) => {
    for (const match of text.matchAll(PLACEHOLDER)) {
      const name = match[1] ?? "";
      if (!(PLACEHOLDERS as readonly string[]).includes(name)) {
        problems.push({
          path: at,
          message: `unknown placeholder {{${name}}}; the input may use ${PLACEHOLDERS.map((p) => `{{${p}}}`).join(", ")}`,
        });
      }
    }
  });
  return problems;
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

/** The input with every placeholder replaced; unknown ones were refused when the schedule was saved. */
export function renderInput<T extends Input>(input: T, values: PlaceholderValues): T {
  return renderValue(input, values) as T;
}

function renderValue(value: unknown, values: PlaceholderValues): unknown {
  if (typeof value === "string") {
    return value.replace(PLACEHOLDER, (whole, name: string) =>
      Object.hasOwn(values, name) ? values[name as Placeholder] : whole,
    );
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
