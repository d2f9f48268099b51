// dead_letters: queue messages whose work kept failing (the dead-letter queue's consumer writes them),
// one row per item with how many of its messages gave up.

export interface DeadLetter {
  kind: string;
  item_id: string;
  body: string;
  messages: number;
  first_dead_at: string;
  last_dead_at: string;
}

export function recordDeadLetter(
  db: D1Database,
  letter: { kind: string; itemId: string; body: string; at: string },
): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO dead_letters (kind, item_id, body, messages, first_dead_at, last_dead_at)
       VALUES (?, ?, ?, 1, ?, ?)
       ON CONFLICT (kind, item_id) DO UPDATE SET messages = messages + 1, body = excluded.body,
         last_dead_at = excluded.last_dead_at`,
    )
    .bind(letter.kind, letter.itemId, letter.body, letter.at, letter.at);
}

export async function countDeadLetters(db: D1Database): Promise<number> {
  return (await db.prepare("SELECT COUNT(*) AS n FROM dead_letters").first<number>("n")) ?? 0;
}

/** Takes up to `limit` dead letters off the table (oldest first), for replaying them. */
export async function takeDeadLetters(db: D1Database, limit: number): Promise<DeadLetter[]> {
  const { results } = await db
    .prepare(
      `DELETE FROM dead_letters WHERE rowid IN (SELECT rowid FROM dead_letters ORDER BY last_dead_at LIMIT ?)
       RETURNING *`,
    )
    .bind(limit)
    .all<DeadLetter>();
  return results;
}
