// operator_alerts: problems only the operator can fix, kept until the next success shows them fixed.

export const PARALLEL_CREDENTIALS_ALERT = "parallel_credentials";

export interface OperatorAlert {
  name: string;
  status: number;
  reason: string;
  first_seen_at: string;
  last_seen_at: string;
}

export function raiseOperatorAlert(
  db: D1Database,
  alert: { name: string; status: number; reason: string; at: string },
): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO operator_alerts (name, status, reason, first_seen_at, last_seen_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET status = excluded.status, reason = excluded.reason,
         last_seen_at = excluded.last_seen_at`,
    )
    .bind(alert.name, alert.status, alert.reason, alert.at, alert.at);
}

/** Writes nothing when there is no such alert (the usual case). */
export function clearOperatorAlert(db: D1Database, name: string): D1PreparedStatement {
  return db.prepare("DELETE FROM operator_alerts WHERE name = ?").bind(name);
}

export async function listOperatorAlerts(db: D1Database): Promise<OperatorAlert[]> {
  const { results } = await db.prepare("SELECT * FROM operator_alerts ORDER BY name").all<OperatorAlert>();
  return results;
}
