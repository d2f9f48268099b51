// api_keys: only a hash of each key is stored.
import type { BudgetRow } from "./spend";

/** The budget columns (migration 0016) are written by db/spend.ts. */
export interface ApiKeyRow extends BudgetRow {
  id: string;
  name: string;
  key_hash: string;
  key_prefix: string;
  signing_secret: string;
  created_at: string;
  revoked_at: string | null;
}

export function insertApiKey(db: D1Database, row: ApiKeyRow): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO api_keys (id, name, key_hash, key_prefix, signing_secret, created_at, revoked_at,
         monthly_budget_micro_usd, budget_month, budget_spent_micro_usd)
       VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)`,
    )
    .bind(
      row.id,
      row.name,
      row.key_hash,
      row.key_prefix,
      row.signing_secret,
      row.created_at,
      row.monthly_budget_micro_usd,
      row.budget_month,
      row.budget_spent_micro_usd,
    );
}

export function findActiveKeyByHash(db: D1Database, keyHash: string): Promise<ApiKeyRow | null> {
  return db
    .prepare("SELECT * FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL")
    .bind(keyHash)
    .first<ApiKeyRow>();
}

export function findKey(db: D1Database, id: string): Promise<ApiKeyRow | null> {
  return db.prepare("SELECT * FROM api_keys WHERE id = ?").bind(id).first<ApiKeyRow>();
}

export async function listKeys(db: D1Database): Promise<ApiKeyRow[]> {
  const { results } = await db.prepare("SELECT * FROM api_keys ORDER BY id DESC").all<ApiKeyRow>();
  return results;
}

export async function revokeKey(db: D1Database, id: string, now: string): Promise<ApiKeyRow | null> {
  return db
    .prepare("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? RETURNING *")
    .bind(now, id)
    .first<ApiKeyRow>();
}

/** What signs a key's callbacks: its secret and, for a while after a rotation, the one it replaced. */
export interface SigningSecrets {
  id: string;
  signing_secret: string;
  previous_signing_secret: string | null;
  previous_signing_secret_expires_at: string | null;
}

export function findSigningSecrets(db: D1Database, keyId: string): Promise<SigningSecrets | null> {
  return db
    .prepare(
      `SELECT id, signing_secret, previous_signing_secret, previous_signing_secret_expires_at
       FROM api_keys WHERE id = ?`,
    )
    .bind(keyId)
    .first<SigningSecrets>();
}

/** The current secret becomes the previous one (until `previousExpiresAt`); an older previous one is dropped. */
export function rotateSigningSecret(
  db: D1Database,
  id: string,
  secret: string,
  previousExpiresAt: string,
): Promise<SigningSecrets | null> {
  return db
    .prepare(
      `UPDATE api_keys SET previous_signing_secret = signing_secret, previous_signing_secret_expires_at = ?,
         signing_secret = ?
       WHERE id = ?
       RETURNING id, signing_secret, previous_signing_secret, previous_signing_secret_expires_at`,
    )
    .bind(previousExpiresAt, secret, id)
    .first<SigningSecrets>();
}
