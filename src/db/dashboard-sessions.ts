// dashboard_sessions: signed-in browsers. Only a digest of each cookie token is stored.

export interface DashboardSessionRow {
  id_hash: string;
  /** The signed-in key; null for the admin. */
  api_key_id: string | null;
  csrf_token: string;
  created_at: string;
  expires_at: string;
}

/** A live session with its key's name and prefix (null for the admin). */
export interface DashboardSessionWithKey extends DashboardSessionRow {
  key_name: string | null;
  key_prefix: string | null;
  /** The key's budget columns (migration 0016), for the budget notice; null for the admin. */
  monthly_budget_micro_usd: number | null;
  budget_month: string | null;
  budget_spent_micro_usd: number | null;
}

export function insertDashboardSession(db: D1Database, row: DashboardSessionRow): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO dashboard_sessions (id_hash, api_key_id, csrf_token, created_at, expires_at)
       VALUES (?, ?, ?, ?, ?)`,
    )
    .bind(row.id_hash, row.api_key_id, row.csrf_token, row.created_at, row.expires_at);
}

export function deleteExpiredDashboardSessions(db: D1Database, now: string): D1PreparedStatement {
  return db.prepare("DELETE FROM dashboard_sessions WHERE expires_at <= ?").bind(now);
}

/**
 * The unexpired session with this digest. A key's session counts only while its key is active:
 * revoking a key signs its browsers out.
 */
export function findLiveDashboardSession(
  db: D1Database,
  idHash: string,
  now: string,
): Promise<DashboardSessionWithKey | null> {
  return db
    .prepare(
      `SELECT s.*, k.name AS key_name, k.key_prefix AS key_prefix, k.monthly_budget_micro_usd,
         k.budget_month, k.budget_spent_micro_usd
       FROM dashboard_sessions s LEFT JOIN api_keys k ON k.id = s.api_key_id
       WHERE s.id_hash = ? AND s.expires_at > ? AND (s.api_key_id IS NULL OR k.revoked_at IS NULL)`,
    )
    .bind(idHash, now)
    .first<DashboardSessionWithKey>();
}

export function deleteDashboardSession(db: D1Database, idHash: string): D1PreparedStatement {
  return db.prepare("DELETE FROM dashboard_sessions WHERE id_hash = ?").bind(idHash);
}
