-- taskrelay: API keys, runs, their timelines, and inbound webhook de-duplication.
-- Timestamps are ISO 8601 UTC text from Date.toISOString() (always 24 characters), so text
-- order is time order and comparisons against '2026-…Z' use the indexes.

CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,                 -- key_…
  name TEXT NOT NULL,
  key_hash TEXT NOT NULL UNIQUE,       -- SHA-256 hex of the key; the key itself is never stored
  key_prefix TEXT NOT NULL,            -- first characters, to recognise a key in a list
  signing_secret TEXT NOT NULL,        -- whsec_…: signs this key's callbacks
  created_at TEXT NOT NULL,
  revoked_at TEXT
);

CREATE TABLE runs (
  id TEXT PRIMARY KEY,                 -- run_… (time-ordered)
  api_key_id TEXT NOT NULL REFERENCES api_keys(id),
  schedule_id TEXT,
  parallel_run_id TEXT UNIQUE,         -- trun_…, once Parallel accepted the run
  interaction_id TEXT,
  status TEXT NOT NULL,                -- submitting | queued | running | action_required | cancelling
                                       -- | completed | failed | cancelled | rejected | expired
  processor TEXT NOT NULL,
  input TEXT NOT NULL,                 -- JSON
  task_spec TEXT,                      -- JSON
  metadata TEXT,                       -- JSON, the user's metadata (without taskrelay's own key)
  source_policy TEXT,                  -- JSON
  previous_interaction_id TEXT,
  enable_events INTEGER,               -- 0 | 1 | NULL (Parallel's default)
  mcp_servers TEXT,                    -- JSON; header values are secrets and never shown
  callback_url TEXT,
  idempotency_key TEXT,
  request_hash TEXT,                   -- SHA-256 of the canonical request, for Idempotency-Key replays
  output TEXT,                         -- JSON: Parallel's output object (type, content, basis, …)
  warnings TEXT,                       -- JSON array of Parallel's warnings
  error TEXT,                          -- JSON {code, message, detail}
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  submitted_at TEXT,
  finished_at TEXT,                    -- when the terminal status became known
  result_stored_at TEXT,
  deadline_at TEXT,                    -- an active run past this is checked once more, then expired
  attempts INTEGER NOT NULL DEFAULT 0, -- attempts in the current phase (submit, poll or result fetch)
  next_sweep_at TEXT,                  -- when the sweeper should look at the run next; NULL: nothing to do
  lease_until TEXT,                    -- a worker owns the run's next step until then
  UNIQUE (api_key_id, idempotency_key)
);

-- The sweeper's queries: by status, due first. Finished runs have next_sweep_at NULL and are not in it,
-- so a sweep reads rows in proportion to due work, not to the number of runs stored.
CREATE INDEX runs_due ON runs (status, next_sweep_at) WHERE next_sweep_at IS NOT NULL;
CREATE INDEX runs_by_owner ON runs (api_key_id, id);
CREATE INDEX runs_by_owner_status ON runs (api_key_id, status, id);

-- What happened to a run and when: GET /v1/runs/:id/timeline.
CREATE TABLE run_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id TEXT NOT NULL,
  at TEXT NOT NULL,
  kind TEXT NOT NULL,
  detail TEXT                          -- JSON
);
CREATE INDEX run_events_by_run ON run_events (run_id, id);

-- Parallel's webhook-id, kept for the replay window so a repeated delivery does no work twice.
CREATE TABLE webhook_events (
  webhook_id TEXT PRIMARY KEY,
  parallel_run_id TEXT,
  run_id TEXT,                         -- NULL when the run is not one of ours
  status TEXT,
  received_at TEXT NOT NULL
);
CREATE INDEX webhook_events_by_time ON webhook_events (received_at);
