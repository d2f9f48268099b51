-- taskrelay: callback deliveries (one per run and event), every attempt at sending one, and the
-- signing-secret rotation of API keys. Timestamps are ISO 8601 UTC text, as in 0001.

-- A delivery is one event to one callback URL. Its id is the Standard Webhooks `webhook-id`, the same on
-- every attempt, so receivers can deduplicate. A manual retry starts a new series on the same row.
CREATE TABLE deliveries (
  id TEXT PRIMARY KEY,                 -- dlv_… (time-ordered); the webhook-id
  run_id TEXT NOT NULL REFERENCES runs(id),
  api_key_id TEXT NOT NULL REFERENCES api_keys(id),
  event TEXT NOT NULL,                 -- run.completed | run.failed
  url TEXT NOT NULL,                   -- the run's callback URL, checked again before every attempt
  status TEXT NOT NULL,                -- pending | succeeded | dead
  series INTEGER NOT NULL DEFAULT 1,   -- 1, then +1 for each manual retry
  attempt_count INTEGER NOT NULL DEFAULT 0, -- attempts made in the current series
  next_attempt_at TEXT,                -- when the next attempt is due; NULL unless pending
  lease_until TEXT,                    -- a worker owns the next attempt until then
  last_attempt_at TEXT,
  last_status_code INTEGER,            -- the receiver's HTTP status; NULL when no response came
  last_error TEXT,                     -- why the last attempt failed, or why the delivery is dead
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  UNIQUE (run_id, event)
);

-- The sweeper's query: pending deliveries, due first. Finished deliveries are not in the index.
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_owner ON deliveries (api_key_id, id);
CREATE INDEX deliveries_by_owner_status ON deliveries (api_key_id, status, id);

CREATE TABLE delivery_attempts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  delivery_id TEXT NOT NULL REFERENCES deliveries(id),
  series INTEGER NOT NULL,
  attempt INTEGER NOT NULL,            -- 1-based within the series
  attempted_at TEXT NOT NULL,
  status_code INTEGER,                 -- NULL: no response (timeout, network error)
  latency_ms INTEGER NOT NULL,
  error TEXT                           -- NULL on success
);
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id, id);

-- Rotation: the replaced secret keeps signing (as a second signature) until it expires.
ALTER TABLE api_keys ADD COLUMN previous_signing_secret TEXT;
ALTER TABLE api_keys ADD COLUMN previous_signing_secret_expires_at TEXT;
