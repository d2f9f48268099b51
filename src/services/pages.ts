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

/**
 * Cursors of lists keyed by an INTEGER id (a timeline, attempts, occurrences): the id behind a
 * prefix naming the list, so a cursor of one list is refused by another.
 */
export const encodeSequenceCursor = (prefix: string, id: number): string => encodeCursor(`${prefix}_${id}`);

/** The id a sequence page starts above (or below), from the previous page's cursor. */
export function decodeSequenceCursor(prefix: string, cursor: string): number {
  const decoded = decodeCursor(cursor);
  const id = Number(decoded.slice(prefix.length + 1));
  if (!decoded.startsWith(`${prefix}_`) || !Number.isSafeInteger(id)) {
    throw validationFailed([{ path: "cursor", message: "not a cursor this API returned" }]);
  }
  return id;
}

/** toPage for lists keyed by an INTEGER id. */
export function toSequencePage<T extends { id: number }>(
  rows: T[],
  limit: number,
  prefix: string,
): { items: T[]; nextCursor: string | null } {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return { items, nextCursor: rows.length > limit && last ? encodeSequenceCursor(prefix, last.id) : null };
}
