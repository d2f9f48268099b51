-- taskrelay: a batch's results in bulk (issue 15). The bulk result fetch reads the Task Group's runs
-- stream for a batch and stores every output it brings; it has its own due time and lease, so it never
-- contends with the batch submission for batches.next_sweep_at / lease_until.
--
-- results_sweep_at: when the batch_results job should next read the group's runs stream (or check the
-- batch for completion). A new batch is due at once (the default); a batch run's terminal status pulls
-- it forward; NULL once the batch is completed (batch.completed created).
ALTER TABLE batches ADD COLUMN results_sweep_at TEXT DEFAULT '1970-01-01T00:00:00.000Z';
ALTER TABLE batches ADD COLUMN results_lease_until TEXT;
CREATE INDEX batches_results_due ON batches (results_sweep_at) WHERE results_sweep_at IS NOT NULL;

-- The batch.completed callback is a delivery like a run's (signed, retried, attempts recorded). A
-- delivery still names a run (run_id is NOT NULL and referenced); a batch's delivery names the batch's
-- first run (batch_index 0) with event 'batch.completed', so UNIQUE (run_id, event) allows exactly one
-- per batch, and batch_id says whose it is.
ALTER TABLE deliveries ADD COLUMN batch_id TEXT;

-- A batch's runs not yet finished (not terminal, or completed with the result not stored yet): the
-- completion check (db/batch-results.ts completeBatchStatement) reads one entry of it instead of
-- scanning the batch's runs. Single runs never enter it; a batch run leaves it once finished.
CREATE INDEX runs_batch_unfinished ON runs (batch_id)
  WHERE batch_id IS NOT NULL
    AND (status NOT IN ('completed', 'failed', 'cancelled', 'rejected', 'expired')
         OR (status = 'completed' AND result_stored_at IS NULL));
