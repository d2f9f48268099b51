-- taskrelay: dashboard sign-in sessions, and the indexes of the admin's views across every key.
-- Timestamps are ISO 8601 UTC text from Date.toISOString(), as everywhere.

-- A signed-in browser. The cookie holds a random token; only a digest of it is stored, so a read of
-- this table cannot be replayed as a cookie. A key's session digests the token with SHA-256; the
-- admin's with HMAC-SHA256 keyed by ADMIN_TOKEN, so rotating the admin token ends every admin session.
CREATE TABLE dashboard_sessions (
  id_hash TEXT PRIMARY KEY,            -- hex digest of the cookie's token
  api_key_id TEXT REFERENCES api_keys(id), -- the signed-in key; NULL for the admin
  csrf_token TEXT NOT NULL,            -- every form of this session carries it
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL
);
-- Signing in deletes the expired sessions; this keeps that to the rows it deletes.
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);

-- The admin's run and delivery lists filter by status across every key, newest first.
CREATE INDEX runs_by_status ON runs (status, id);
CREATE INDEX deliveries_by_status ON deliveries (status, id);
