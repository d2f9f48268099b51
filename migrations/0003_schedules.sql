-- taskrelay: recurring research schedules, what each of their occurrences came to, and whether a
-- scheduled run's output changed since the schedule's last success.
-- Timestamps are ISO 8601 UTC text from Date.toISOString(), as everywhere.

CREATE TABLE schedules (
  id TEXT PRIMARY KEY,                       -- sch_… (time-ordered)
  api_key_id TEXT NOT NULL REFERENCES api_keys(id),
  name TEXT NOT NULL,
  cron TEXT NOT NULL,                        -- five fields, read in `timezone`
  timezone TEXT NOT NULL,                    -- IANA name, as Intl resolves it (e.g. America/New_York)
  template TEXT NOT NULL,                    -- JSON {processor, input, task_spec?, metadata?, source_policy?}
  callback_url TEXT,                         -- becomes each run's callback
  overlap TEXT NOT NULL,                     -- skip | allow
  missed TEXT NOT NULL,                      -- run_once | skip
  notify TEXT NOT NULL,                      -- always | on_change
  chain_interactions INTEGER NOT NULL,       -- 0 | 1
  enabled INTEGER NOT NULL,                  -- 0 | 1
  next_run_at TEXT,                          -- the next occurrence; NULL while paused or when the cron never fires again
  lease_until TEXT,                          -- a tick owns the schedule's firing until then
  last_run_id TEXT,                          -- the newest run it started (fired or triggered)
  last_fired_at TEXT,                        -- the occurrence that run stands for
  last_success_run_id TEXT,
  last_success_at TEXT,                      -- the occurrence of the newest run that completed with a result
  last_success_interaction_id TEXT,          -- chained into the next run's previous_interaction_id
  last_output_hash TEXT,                     -- SHA-256 of canonical JSON of that run's output.content
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);

-- The minute tick's query: due, enabled schedules, oldest first. Paused schedules are not in it.
CREATE INDEX schedules_due ON schedules (enabled, next_run_at) WHERE enabled = 1 AND next_run_at IS NOT NULL;
CREATE INDEX schedules_by_owner ON schedules (api_key_id, id);

-- Every decision about an occurrence: fired, triggered by hand, or skipped (and why).
CREATE TABLE schedule_occurrences (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  schedule_id TEXT NOT NULL,
  scheduled_at TEXT NOT NULL,                -- the occurrence (for a trigger: when it was asked for)
  decided_at TEXT NOT NULL,                  -- when the tick (or the trigger) decided
  outcome TEXT NOT NULL,                     -- fired | triggered | skipped_overlap | skipped_missed | failed
  run_id TEXT,                               -- the run it started, if any
  reason TEXT                                -- why it was skipped or failed, or which missed occurrences a run covers
);
CREATE INDEX schedule_occurrences_by_schedule ON schedule_occurrences (schedule_id, id);

-- A scheduled run's output compared with its schedule's previous success: 1 changed, 0 equal,
-- NULL not compared (not a scheduled run, or no result).
ALTER TABLE runs ADD COLUMN output_changed INTEGER;

-- GET /v1/schedules/:id/runs.
CREATE INDEX runs_by_schedule ON runs (schedule_id, id) WHERE schedule_id IS NOT NULL;
