// A test double of D1 that enforces what Cloudflare's D1 enforces and local workerd does not
// (docs/toolchain: D1 limits), so a Worker test fails where a deployment would: a string or BLOB or
// row over 2,000,000 bytes, more than 100 bound parameters in one statement, SQL text over 100,000
// bytes, and more D1 calls in one invocation than SUBREQUEST_BUDGET (a batch is one call, as the
// architecture assumes). setup.ts puts it in front of env.DB for every test file. A row is checked
// whenever it comes back, and an UPDATE without RETURNING is run with `RETURNING *` (its rows checked,
// then dropped from the result), so a row an UPDATE grows past the limit is refused at that UPDATE.
import { AsyncLocalStorage } from "node:async_hooks";

export const D1_LIMITS = {
  valueBytes: 2_000_000,
  rowBytes: 2_000_000,
  boundParameters: 100,
  sqlBytes: 100_000,
} as const;

interface Invocation {
  label: string;
  budget: number;
  calls: number;
}

const invocations = new AsyncLocalStorage<Invocation>();

/**
 * Runs `work` as one Worker invocation: every D1 call it makes, its waitUntil work included (the
 * async context follows it), counts against `budget`. Calls outside any invocation (a test's own
 * setup queries) are not counted.
 */
export function asInvocation<T>(label: string, budget: number, work: () => T): T {
  return invocations.run({ label, budget, calls: 0 }, work);
}

const encoder = new TextEncoder();

/** The bytes a value takes in a row: UTF-8 for text, the length of a BLOB, 8 for a number. */
function bytesOf(value: unknown): number {
  if (value === null || value === undefined) return 0;
  if (typeof value === "string") return encoder.encode(value).length;
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return value.byteLength;
  return 8;
}

function refuse(message: string): never {
  throw new Error(`D1_ERROR: ${message} (test/worker/d1-limits.ts enforces Cloudflare's D1 limits)`);
}

function checkSql(sql: string) {
  const bytes = encoder.encode(sql).length;
  if (bytes > D1_LIMITS.sqlBytes)
    refuse(`statement too long: ${bytes} bytes of SQL, the limit is ${D1_LIMITS.sqlBytes}`);
}

function checkValues(sql: string, values: unknown[]) {
  if (values.length > D1_LIMITS.boundParameters) {
    refuse(
      `too many SQL variables: ${values.length} bound parameters, the limit is ${D1_LIMITS.boundParameters}`,
    );
  }
  let total = 0;
  for (const value of values) {
    const bytes = bytesOf(value);
    if (bytes > D1_LIMITS.valueBytes) {
      refuse(`string or blob too big: a bound value of ${bytes} bytes, the limit is ${D1_LIMITS.valueBytes}`);
    }
    total += bytes;
  }
  // Every value of one INSERT or UPDATE lands in one row (the statements here write one row each).
  if (total > D1_LIMITS.rowBytes && /^\s*(INSERT|UPDATE)/i.test(sql)) {
    refuse(`row too big: ${total} bytes bound in one statement, the limit is ${D1_LIMITS.rowBytes}`);
  }
}

function checkRows(result: D1Result<unknown>) {
  for (const row of result.results ?? []) {
    if (typeof row !== "object" || row === null) continue;
    let total = 0;
    for (const value of Object.values(row)) total += bytesOf(value);
    if (total > D1_LIMITS.rowBytes)
      refuse(`row too big: a row of ${total} bytes, the limit is ${D1_LIMITS.rowBytes}`);
  }
}

function countCall() {
  const invocation = invocations.getStore();
  if (!invocation) return;
  invocation.calls++;
  if (invocation.calls > invocation.budget) {
    refuse(
      `too many queries in one invocation: call ${invocation.calls} of ${invocation.label}, ` +
        `SUBREQUEST_BUDGET is ${invocation.budget}`,
    );
  }
}

/** The statement a limited one wraps, for batch(), which needs D1's own objects. */
const originals = new WeakMap<object, D1PreparedStatement>();

/** Statements run with a `RETURNING *` of the double's own: their rows are checked, not returned. */
const checkedOnly = new WeakSet<object>();

/** An UPDATE that returns nothing: the double has it return its rows, to check their size. */
function withReturning(sql: string): string {
  const body = sql.trim().replace(/;$/, "");
  return /^UPDATE\b/i.test(body) && !/\bRETURNING\b/i.test(body) ? `${body} RETURNING *` : sql;
}

/** The rows checked, and dropped again if the double asked for them. */
function checked<T>(statement: object, result: D1Result<T>): D1Result<T> {
  checkRows(result);
  return checkedOnly.has(statement) ? { ...result, results: [] } : result;
}

class LimitedStatement implements D1PreparedStatement {
  readonly #statement: D1PreparedStatement;
  readonly #sql: string;

  constructor(statement: D1PreparedStatement, sql: string, returnsOnlyForTheCheck: boolean) {
    this.#statement = statement;
    this.#sql = sql;
    originals.set(this, statement);
    if (returnsOnlyForTheCheck) checkedOnly.add(statement);
  }

  bind(...values: unknown[]): D1PreparedStatement {
    checkValues(this.#sql, values);
    return new LimitedStatement(this.#statement.bind(...values), this.#sql, checkedOnly.has(this.#statement));
  }

  first<T = unknown>(colName: string): Promise<T | null>;
  first<T = Record<string, unknown>>(): Promise<T | null>;
  async first<T>(colName?: string): Promise<T | null> {
    countCall();
    const result = checked(this.#statement, await this.#statement.all<Record<string, unknown>>());
    const row = result.results[0];
    if (!row) return null;
    return (colName === undefined ? row : (row[colName] ?? null)) as T | null;
  }

  async run<T = Record<string, unknown>>(): Promise<D1Result<T>> {
    countCall();
    return checked(this.#statement, await this.#statement.run<T>());
  }

  async all<T = Record<string, unknown>>(): Promise<D1Result<T>> {
    countCall();
    return checked(this.#statement, await this.#statement.all<T>());
  }

  raw<T = unknown[]>(options: { columnNames: true }): Promise<[string[], ...T[]]>;
  raw<T = unknown[]>(options?: { columnNames?: false }): Promise<T[]>;
  raw<T = unknown[]>(options?: { columnNames?: boolean }): Promise<T[] | [string[], ...T[]]> {
    countCall();
    return options?.columnNames ? this.#statement.raw<T>({ columnNames: true }) : this.#statement.raw<T>();
  }
}

export function limitedDatabase(db: D1Database): D1Database {
  return {
    prepare: (query: string) => {
      checkSql(query);
      const run = withReturning(query);
      return new LimitedStatement(db.prepare(run), query, run !== query);
    },
    batch: async <T = unknown>(statements: D1PreparedStatement[]) => {
      countCall();
      const own = statements.map((s) => originals.get(s) ?? s);
      const results = await db.batch<T>(own);
      return results.map((result, i) => checked(own[i] as object, result));
    },
    exec: (query: string) => {
      countCall();
      checkSql(query);
      return db.exec(query);
    },
    withSession: (constraint?: D1SessionBookmark | D1SessionConstraint) => db.withSession(constraint),
    dump: () => db.dump(),
  };
}
