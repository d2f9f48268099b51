// Cursor pagination, the same for every list. Cursors are opaque to clients; inside, the last id of
// the page (ids are time-ordered). Lists are read with db/page.ts, one row more than the page.
import { validationFailed } from "../errors";

export interface PageRequest {
  limit: number;
  cursor?: string | undefined;
}

export function encodeCursor(id: string): string {
  return btoa(id).replaceAll("=", "");
}

export function decodeCursor(cursor: string): string {
  try {
    const id = atob(cursor);
    if (/^[a-z]+_[0-9A-Z]+$/.test(id)) return id;
  } catch {
    // fall through
  }
  throw validationFailed([{ path: "cursor", message: "not a cursor this API returned" }]);
}

/** The id a page starts below, from the cursor of the previous page. */
export const beforeIdOf = (cursor: string | undefined): string | undefined =>
  cursor ? decodeCursor(cursor) : undefined;

/** Drops the extra row and makes the next cursor when there is a next page. */
export function toPage<T extends { id: string }>(
  rows: T[],
  limit: number,
): { items: T[]; nextCursor: string | null } {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return { items, nextCursor: rows.length > limit && last ? encodeCursor(last.id) : null };
}
