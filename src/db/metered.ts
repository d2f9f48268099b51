// Counts what D1 does for a request or a cron tick: queries, rows read, rows written. The counts go
// into the structured logs (http.request, cron.tick), where the benchmark reads the
// D1 cost per run and per sweep tick from a real local stack, and production dashboards can too.

export interface D1Usage {
  d1_queries: number;
  d1_rows_read: number;
  d1_rows_written: number;
}

export const emptyUsage = (): D1Usage => ({ d1_queries: 0, d1_rows_read: 0, d1_rows_written: 0 });

export function usageSince(now: D1Usage, before: D1Usage): D1Usage {
  return {
    d1_queries: now.d1_queries - before.d1_queries,
    d1_rows_read: now.d1_rows_read - before.d1_rows_read,
    d1_rows_written: now.d1_rows_written - before.d1_rows_written,
  };
}

function record(usage: D1Usage, meta: Partial<D1Meta> | undefined) {
  usage.d1_queries++;
  usage.d1_rows_read += meta?.rows_read ?? 0;
  usage.d1_rows_written += meta?.rows_written ?? 0;
}

/** The statement a metered one wraps, for batch(), which needs D1's own objects. */
const originals = new WeakMap<object, D1PreparedStatement>();

class MeteredStatement implements D1PreparedStatement {
  readonly #statement: D1PreparedStatement;
  readonly #usage: D1Usage;

  constructor(statement: D1PreparedStatement, usage: D1Usage) {
    this.#statement = statement;
    this.#usage = usage;
    originals.set(this, statement);
  }

  bind(...values: unknown[]): D1PreparedStatement {
    return new MeteredStatement(this.#statement.bind(...values), this.#usage);
  }

  first<T = unknown>(colName: string): Promise<T | null>;
  first<T = Record<string, unknown>>(): Promise<T | null>;
  async first<T>(colName?: string): Promise<T | null> {
    // first() reports no meta; all() returns the same first row and does.
    const result = await this.all<Record<string, unknown>>();
    const row = result.results[0];
    if (!row) return null;
    return (colName === undefined ? row : (row[colName] ?? null)) as T | null;
  }

  async run<T = Record<string, unknown>>(): Promise<D1Result<T>> {
    const result = await this.#statement.run<T>();
    record(this.#usage, result.meta);
    return result;
  }

  async all<T = Record<string, unknown>>(): Promise<D1Result<T>> {
    const result = await this.#statement.all<T>();
    record(this.#usage, result.meta);
    return result;
  }

  raw<T = unknown[]>(options: { columnNames: true }): Promise<[string[], ...T[]]>;
  raw<T = unknown[]>(options?: { columnNames?: false }): Promise<T[]>;
  raw<T = unknown[]>(options?: { columnNames?: boolean }): Promise<T[] | [string[], ...T[]]> {
    this.#usage.d1_queries++;
    return options?.columnNames ? this.#statement.raw<T>({ columnNames: true }) : this.#statement.raw<T>();
  }
}

export function meteredDatabase(db: D1Database, usage: D1Usage): D1Database {
  return {
    prepare: (query: string) => new MeteredStatement(db.prepare(query), usage),
    batch: async <T = unknown>(statements: D1PreparedStatement[]) => {
      const results = await db.batch<T>(statements.map((s) => originals.get(s) ?? s));
      for (const result of results) record(usage, result.meta);
      return results;
    },
    exec: (query: string) => db.exec(query),
    withSession: (constraint?: D1SessionBookmark | D1SessionConstraint) => db.withSession(constraint),
    dump: () => db.dump(),
  };
}
