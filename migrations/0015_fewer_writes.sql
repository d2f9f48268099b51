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

-- delivery_attempts without AUTOINCREMENT: its sqlite_sequence row was one more write per attempt.
-- Attempts are never deleted, so the rowid still only grows (ids keep their values).
CREATE TABLE delivery_attempts_new (
  id INTEGER PRIMARY KEY,
  delivery_id TEXT NOT NULL REFERENCES deliveries(id),
  series INTEGER NOT NULL,
  attempt INTEGER NOT NULL,            -- 1-based within the series
  attempted_at TEXT NOT NULL,
  status_code INTEGER,                 -- NULL: no response (timeout, network error)
  latency_ms INTEGER NOT NULL,
  error TEXT                           -- NULL on success
);
INSERT INTO delivery_attempts_new
  SELECT id, delivery_id, series, attempt, attempted_at, status_code, latency_ms, error FROM delivery_attempts;
DROP TABLE delivery_attempts;
ALTER TABLE delivery_attempts_new RENAME TO delivery_attempts;
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id, id);
