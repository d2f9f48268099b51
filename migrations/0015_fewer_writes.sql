-- taskrelay: fewer D1 rows written per run (issue 13). D1 bills every row written, and every index
-- entry an INSERT adds, or an UPDATE of an indexed column moves, is one more; the Free plan allows
-- 100,000 a day. docs/benchmarks.md lists what each remaining write of a run is for.

-- Status filters of the lists read through the owner index (runs_by_owner, deliveries_by_owner) or
-- the primary key (the admin's lists) and skip the other statuses: a few more rows read on a rare
-- filter, instead of three index entries moved on every run (insert, submitted, finished).
DROP INDEX runs_by_owner_status;
DROP INDEX runs_by_status;
DROP INDEX deliveries_by_owner_status;
DROP INDEX deliveries_by_status;

-- A run's timeline lives in its row: the events of a step are appended by the UPDATE that makes the
-- step, so they cost no row of their own. `timeline` is a JSON array of {at, kind, detail}, oldest
-- first; `timeline_count` counts every event. Past TIMELINE_INLINE_MAX events (db/run-events.ts) the
-- rest go to run_events rows, so a run retried by hand without end never grows past D1's row limit.
ALTER TABLE runs ADD COLUMN timeline TEXT;
ALTER TABLE runs ADD COLUMN timeline_count INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET
  timeline = (
    SELECT json_group_array(json_object('at', e.at, 'kind', e.kind, 'detail', json(e.detail)))
    FROM (SELECT at, kind, detail FROM run_events WHERE run_id = runs.id ORDER BY id) AS e
  ),
  timeline_count = (SELECT COUNT(*) FROM run_events WHERE run_id = runs.id)
WHERE id IN (SELECT run_id FROM run_events);
-- What is left of run_events is the overflow, empty now: no AUTOINCREMENT (its sqlite_sequence row
-- would be one more write per insert), rows in insertion order all the same.
DROP TABLE run_events;
CREATE TABLE run_events (
  id INTEGER PRIMARY KEY,
  run_id TEXT NOT NULL,
  at TEXT NOT NULL,
  kind TEXT NOT NULL,
  detail TEXT                          -- JSON
);
CREATE INDEX run_events_by_run ON run_events (run_id, id);

-- webhook_events keyed by the webhook-id itself (no rowid, so no second copy of the key in an
-- automatic index): one row and the pruning index per webhook instead of three.
CREATE TABLE webhook_events_new (
  webhook_id TEXT PRIMARY KEY,
  parallel_run_id TEXT,
  run_id TEXT,                         -- NULL when the run is not one of ours
  status TEXT,
  received_at TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO webhook_events_new SELECT webhook_id, parallel_run_id, run_id, status, received_at FROM webhook_events;
DROP TABLE webhook_events;
ALTER TABLE webhook_events_new RENAME TO webhook_events;
CREATE INDEX webhook_events_by_time ON webhook_events (received_at);

-- runs and deliveries rebuilt (SQLite cannot change a table's constraints in place), so that:
-- * each is keyed by its id itself (WITHOUT ROWID): no automatic index holding a second copy of the
--   id, one write less per insert;
-- * the unique parallel_run_id and (api_key_id, idempotency_key) hold only runs that have one
--   (partial unique indexes): a run is stored before Parallel knows it, and most runs have no
--   Idempotency-Key, so the table's UNIQUE constraints wrote a NULL entry for each at its insert.
--   Lookups (`parallel_run_id = ?`, `idempotency_key = ?`) imply IS NOT NULL, so they use them.
-- Foreign keys stay checked, at the end of the migration (D1's documented way to rebuild a table).
PRAGMA defer_foreign_keys = on;

CREATE TABLE runs_new (
  id TEXT PRIMARY KEY,                 -- run_… (time-ordered)
  api_key_id TEXT NOT NULL REFERENCES api_keys(id),
  schedule_id TEXT,
  parallel_run_id TEXT,                -- trun_…, once Parallel accepted the run (unique: runs_by_parallel_id)
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
  idempotency_key TEXT,                -- unique per key: runs_by_idempotency_key
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
  output_changed INTEGER,              -- 0003
  relay_warnings TEXT,                 -- 0010
  output_key TEXT,                     -- 0011
  output_bytes INTEGER,                -- 0011
  not_found_count INTEGER NOT NULL DEFAULT 0, -- 0012
  batch_id TEXT,                       -- 0014
  batch_index INTEGER,                 -- 0014
  timeline TEXT,                       -- 0015 (above)
  timeline_count INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO runs_new (id, api_key_id, schedule_id, parallel_run_id, interaction_id, status, processor, input,
    task_spec, metadata, source_policy, previous_interaction_id, enable_events, mcp_servers, callback_url,
    idempotency_key, request_hash, output, warnings, error, created_at, updated_at, submitted_at, finished_at,
    result_stored_at, deadline_at, attempts, next_sweep_at, lease_until, output_changed, relay_warnings,
    output_key, output_bytes, not_found_count, batch_id, batch_index, timeline, timeline_count)
  SELECT id, api_key_id, schedule_id, parallel_run_id, interaction_id, status, processor, input,
    task_spec, metadata, source_policy, previous_interaction_id, enable_events, mcp_servers, callback_url,
    idempotency_key, request_hash, output, warnings, error, created_at, updated_at, submitted_at, finished_at,
    result_stored_at, deadline_at, attempts, next_sweep_at, lease_until, output_changed, relay_warnings,
    output_key, output_bytes, not_found_count, batch_id, batch_index, timeline, timeline_count
  FROM runs;
DROP TABLE runs;
ALTER TABLE runs_new RENAME TO runs;
CREATE UNIQUE INDEX runs_by_parallel_id ON runs (parallel_run_id) WHERE parallel_run_id IS NOT NULL;
CREATE UNIQUE INDEX runs_by_idempotency_key ON runs (api_key_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- The indexes of 0001–0014 that stay, as they were.
CREATE INDEX runs_due ON runs (status, next_sweep_at) WHERE next_sweep_at IS NOT NULL;
CREATE INDEX runs_by_owner ON runs (api_key_id, id);
CREATE INDEX runs_by_schedule ON runs (schedule_id, id) WHERE schedule_id IS NOT NULL;
CREATE INDEX runs_by_other_interaction ON runs (interaction_id) WHERE interaction_id <> parallel_run_id;
CREATE UNIQUE INDEX runs_by_batch ON runs (batch_id, batch_index) WHERE batch_id IS NOT NULL;

CREATE TABLE deliveries_new (
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
) WITHOUT ROWID;
INSERT INTO deliveries_new (id, run_id, api_key_id, event, url, status, series, attempt_count, next_attempt_at,
    lease_until, last_attempt_at, last_status_code, last_error, created_at, updated_at)
  SELECT id, run_id, api_key_id, event, url, status, series, attempt_count, next_attempt_at,
    lease_until, last_attempt_at, last_status_code, last_error, created_at, updated_at
  FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_owner ON deliveries (api_key_id, id);

-- delivery_attempts keyed by (delivery_id, series, attempt), which the lease-guarded recordAttempt
-- writes once each: no rowid, no AUTOINCREMENT (its sqlite_sequence row), no separate index — one
-- row written per attempt instead of three. A delivery's attempts read in key order, oldest first.
CREATE TABLE delivery_attempts_new (
  delivery_id TEXT NOT NULL REFERENCES deliveries(id),
  series INTEGER NOT NULL,
  attempt INTEGER NOT NULL,            -- 1-based within the series
  attempted_at TEXT NOT NULL,
  status_code INTEGER,                 -- NULL: no response (timeout, network error)
  latency_ms INTEGER NOT NULL,
  error TEXT,                          -- NULL on success
  PRIMARY KEY (delivery_id, series, attempt)
) WITHOUT ROWID;
INSERT OR IGNORE INTO delivery_attempts_new (delivery_id, series, attempt, attempted_at, status_code, latency_ms, error)
  SELECT delivery_id, series, attempt, attempted_at, status_code, latency_ms, error FROM delivery_attempts ORDER BY id;
DROP TABLE delivery_attempts;
ALTER TABLE delivery_attempts_new RENAME TO delivery_attempts;

PRAGMA defer_foreign_keys = off;
