-- taskrelay: where a batch's submission to its Task Group has got to (issue 15). Inputs are handed to
-- Parallel in batch_index order, one add-runs call of up to 1,000 inputs at a time
-- (services/batch-submission.ts).
ALTER TABLE batches ADD COLUMN submit_next INTEGER NOT NULL DEFAULT 0; -- first batch_index not yet handed to Parallel
-- While an add-runs call is in flight (or its answer was lost): the end (exclusive) of its chunk
-- [submit_next, chunk_end). NULL when no chunk is in doubt. A batch found with it set is reconciled
-- against the group's runs before anything is sent again, so a chunk is never created twice.
ALTER TABLE batches ADD COLUMN chunk_end INTEGER;
ALTER TABLE batches ADD COLUMN submit_attempts INTEGER NOT NULL DEFAULT 0; -- failed tries of the current chunk
ALTER TABLE batches ADD COLUMN last_chunk_at TEXT;                         -- when Parallel last accepted a chunk (the ETA)
ALTER TABLE batches ADD COLUMN run_cursor TEXT;                            -- runs stream cursor of the last accepted chunk (reconciliation reads from there)

-- GET /v1/runs?batch_id=: a batch's runs newest first, as every run list pages.
CREATE INDEX runs_by_batch_id ON runs (batch_id, id) WHERE batch_id IS NOT NULL;
