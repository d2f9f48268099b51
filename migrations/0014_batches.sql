-- taskrelay: batches. A batch is one list of inputs run with one template (issue 15). Each input is an
-- ordinary run (runs.batch_id, runs.batch_index), so results, timelines, deliveries, the sweeper and the
-- webhook pipeline work for batch runs unchanged. The batch is submitted to Parallel as one Task Group,
-- in add-runs calls of up to 1,000 inputs.
--
-- This file is the contract the batch work (API, submission, bulk results, export, dashboard) is built
-- on; add columns in a later migration rather than editing it once it has landed.

CREATE TABLE batches (
  id TEXT PRIMARY KEY,                 -- bat_… (time-ordered, as every id)
  api_key_id TEXT NOT NULL REFERENCES api_keys(id),
  name TEXT,
  status TEXT NOT NULL,                -- open | submitting | running | completed | cancelled
  template TEXT NOT NULL,              -- JSON: the fields of a run except input (processor, task_spec, …)
  callback_url TEXT,                   -- batch.completed goes here (and each run's callback if per_run)
  callback_per_run INTEGER NOT NULL DEFAULT 0,
  taskgroup_id TEXT,                   -- Parallel's Task Group, once created
  input_count INTEGER NOT NULL DEFAULT 0, -- inputs accepted so far (the next input's batch_index)
  results_event_id TEXT,               -- last_event_id of the group's runs stream read so far
  idempotency_key TEXT,
  request_hash TEXT,                   -- SHA-256 of the canonical request, for Idempotency-Key replays
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  closed_at TEXT,                      -- no more inputs; NULL while open
  cancelled_at TEXT,
  completed_at TEXT,                   -- closed and every run terminal; batch.completed owed
  next_sweep_at TEXT,                  -- when background work should look at the batch; NULL: nothing to do
  lease_until TEXT,
  UNIQUE (api_key_id, idempotency_key)
);
CREATE INDEX batches_by_owner ON batches (api_key_id, id);
CREATE INDEX batches_due ON batches (next_sweep_at) WHERE next_sweep_at IS NOT NULL;

ALTER TABLE runs ADD COLUMN batch_id TEXT;
ALTER TABLE runs ADD COLUMN batch_index INTEGER;  -- the input's position in the batch, from 0
-- A batch's runs in input order (export, GET /v1/runs?batch_id=); single runs are not in it.
CREATE UNIQUE INDEX runs_by_batch ON runs (batch_id, batch_index) WHERE batch_id IS NOT NULL;
