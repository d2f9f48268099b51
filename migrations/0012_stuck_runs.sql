-- taskrelay: no run stuck forever. Polls that keep finding no run at Parallel, and problems only the
-- operator can fix (Parallel refusing taskrelay's own key or account), which /healthz reports.

-- Consecutive 404s Parallel answered for this run (its polls, then its /result); a few in a row end
-- the run `failed`.
ALTER TABLE runs ADD COLUMN not_found_count INTEGER NOT NULL DEFAULT 0;

-- One row per kind of operator problem seen and not yet resolved (today only `parallel_credentials`:
-- Parallel answered 401 or 402 to a create). Written at most once per request or tick, deleted by
-- the next create Parallel accepts; /healthz says `degraded` while a row exists.
CREATE TABLE operator_alerts (
  name TEXT PRIMARY KEY,
  status INTEGER NOT NULL,             -- the HTTP status Parallel answered
  reason TEXT NOT NULL,                -- what the operator should fix (no secret in it)
  first_seen_at TEXT NOT NULL,
  last_seen_at TEXT NOT NULL
);

-- previous_interaction_id is accepted only for an interaction of the caller's own runs. Parallel's
-- interaction id is the run id in every example, so the lookup goes through the parallel_run_id
-- index; this partial index holds only runs whose interaction id differs, and so costs no writes
-- while Parallel keeps them equal.
CREATE INDEX runs_by_other_interaction ON runs (interaction_id) WHERE interaction_id <> parallel_run_id;
