// Structured logs: one JSON line per event, with the request id, run id, step, outcome and latency
// where they apply. Callers pass fields explicitly; nothing here reads a secret, and `redact` is
// there for the one place a credential-shaped value could slip in (an Authorization header).

export type LogFields = Record<string, unknown>;

export interface Logger {
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

export type LogLevel = "info" | "warn" | "error";
const SEVERITY: Record<LogLevel, number> = { info: 0, warn: 1, error: 2 };

export function createLogger(base: LogFields = {}, minimum: LogLevel = "info"): Logger {
  const write = (level: LogLevel, event: string, fields: LogFields = {}) => {
    if (SEVERITY[level] < SEVERITY[minimum]) return;
    const line = JSON.stringify({ level, event, time: new Date().toISOString(), ...base, ...fields });
    if (level === "error") console.error(line);
    else if (level === "warn") console.warn(line);
    else console.log(line);
  };
  return {
    info: (event, fields) => write("info", event, fields),
    warn: (event, fields) => write("warn", event, fields),
    error: (event, fields) => write("error", event, fields),
    child: (fields) => createLogger({ ...base, ...fields }, minimum),
  };
}

/** Describes an error for a log line without its stack or any request data. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
