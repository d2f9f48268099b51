// Structured logs: JSON lines with the request id, run id, step, outcome and latency where they
// apply. Callers pass fields explicitly and never a secret.
//
// Requests and cron ticks log one wide line each ("canonical log lines"): the info-level steps they
// take (run.status, delivery.attempt, …) are gathered into that line's `steps`, so a webhook, its
// result fetch and its callback cost one line, not six. Warnings and errors are written at once.

export type LogFields = Record<string, unknown>;

export interface Logger {
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

export type LogLevel = "info" | "warn" | "error";
const SEVERITY: Record<LogLevel, number> = { info: 0, warn: 1, error: 2 };

function writeLine(level: LogLevel, minimum: LogLevel, event: string, fields: LogFields) {
  if (SEVERITY[level] < SEVERITY[minimum]) return;
  const line = JSON.stringify({ level, event, time: new Date().toISOString(), ...fields });
  if (level === "error") console.error(line);
  else if (level === "warn") console.warn(line);
  else console.info(line);
}

/** Writes every event as its own line. */
export function createLogger(base: LogFields = {}, minimum: LogLevel = "info"): Logger {
  return {
    info: (event, fields) => writeLine("info", minimum, event, { ...base, ...fields }),
    warn: (event, fields) => writeLine("warn", minimum, event, { ...base, ...fields }),
    error: (event, fields) => writeLine("error", minimum, event, { ...base, ...fields }),
    child: (fields) => createLogger({ ...base, ...fields }, minimum),
  };
}

export interface GatheringLogger extends Logger {
  /** Writes `event` with the steps gathered since the last flush. */
  flush(event: string, fields?: LogFields, level?: LogLevel): void;
  /** After the last flush: steps logged later (a long stream's end) are written at once. */
  close(): void;
}

/** Gathers info-level steps into the next flushed line; warnings and errors are written at once. */
export function createGatheringLogger(base: LogFields = {}, minimum: LogLevel = "info"): GatheringLogger {
  let steps: LogFields[] = [];
  let closed = false;
  const gather = (extra: LogFields) => (event: string, fields?: LogFields) => {
    if (closed) writeLine("info", minimum, event, { ...base, ...extra, ...fields });
    else steps.push({ step: event, ...extra, ...fields });
  };
  const scoped = (extra: LogFields): Logger => ({
    info: gather(extra),
    warn: (event, fields) => writeLine("warn", minimum, event, { ...base, ...extra, ...fields }),
    error: (event, fields) => writeLine("error", minimum, event, { ...base, ...extra, ...fields }),
    child: (fields) => scoped({ ...extra, ...fields }),
  });
  return {
    ...scoped({}),
    flush: (event, fields, level = "info") => {
      writeLine(level, minimum, event, { ...base, ...fields, ...(steps.length > 0 ? { steps } : {}) });
      steps = [];
    },
    close: () => {
      closed = true;
    },
  };
}

/** Describes an error for a log line without its stack or any request data. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
