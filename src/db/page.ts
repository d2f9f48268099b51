// One page of a list, the same way for every table: newest first (ids are time-ordered), the rows
// matching every filter that is set, below the previous page's last id, and one row more than the
// page so the caller knows whether another page follows. Append-only logs (a run's timeline, a
// delivery's attempts) read oldest first instead, from above the previous page's last id, so a
// reader can follow them as they grow.

export type PagedTable = "runs" | "deliveries" | "schedules" | "batches";

export interface PageQuery {
  /** Column → value; an undefined value is no filter. Column names come from code, never from input. */
  filters: Record<string, string | null | undefined>;
  /** Newest first: only rows with an id below this one. */
  beforeId?: string | undefined;
  /** Oldest first: only rows with an id above this one (an INTEGER id; 0 for the first page). */
  afterId?: number | undefined;
  limit: number;
  /** The columns to read (names from code); every column when not given. */
  columns?: readonly string[];
}

export function pageStatement(db: D1Database, table: PagedTable, query: PageQuery): D1PreparedStatement {
  const where: string[] = [];
  const params: unknown[] = [];
  for (const [column, value] of Object.entries(query.filters)) {
    if (value === undefined || value === null) continue;
    where.push(`${column} = ?`);
    params.push(value);
  }
  if (query.beforeId) {
    where.push("id < ?");
    params.push(query.beforeId);
  }
  const oldestFirst = query.afterId !== undefined;
  if (oldestFirst) {
    where.push("id > ?");
    params.push(query.afterId);
  }
  const filter = where.length > 0 ? `WHERE ${where.join(" AND ")}` : "";
  return db
    .prepare(
      `SELECT ${query.columns?.join(", ") ?? "*"} FROM ${table} ${filter} ORDER BY id ${oldestFirst ? "ASC" : "DESC"} LIMIT ?`,
    )
    .bind(...params, query.limit + 1);
}
