-- taskrelay: a batch's runs counted by status on the batch's row (issue 15). GET /v1/batches/:id, the
-- progress stream, the lists and the batch.completed body read one row instead of every run of the
-- batch (100,000 rows read for a 100,000-input batch, per read).
--
-- status_counts: a JSON object {status: runs}; a status no run has is absent or 0.
--   * Inputs are counted as `submitting` by the statement that moves input_count (db/batches.ts
--     insertBatch, addBatchInputsStatement), in the same transaction as their runs' insert: no row of
--     its own, however many inputs (an insert trigger would write the batch row once per input).
--   * Every later change of a batch run's status is counted by the trigger below, from the row's true
--     old and new status, in the same statement as the change: every path (webhook, poll, the bulk
--     stream, a refused or cancelled chunk, expiry) is counted exactly once, and a status written
--     again (a duplicate webhook, webhook and poller both applying it) changes nothing. One row written
--     per transition of a batch run; single runs (batch_id NULL) write nothing more.
-- Trigger bodies are one statement each, without CASE, so wrangler's statement splitter keeps them whole.
ALTER TABLE batches ADD COLUMN status_counts TEXT NOT NULL DEFAULT '{}';

UPDATE batches SET status_counts = (
  SELECT json_group_object(status, n)
  FROM (SELECT status, COUNT(*) AS n FROM runs WHERE runs.batch_id = batches.id GROUP BY status)
);

CREATE TRIGGER batch_run_status_counted AFTER UPDATE OF status ON runs
WHEN NEW.batch_id IS NOT NULL AND NEW.status IS NOT OLD.status
BEGIN
  UPDATE batches SET status_counts = json_set(status_counts,
    '$.' || OLD.status, COALESCE(json_extract(status_counts, '$.' || OLD.status), 0) - 1,
    '$.' || NEW.status, COALESCE(json_extract(status_counts, '$.' || NEW.status), 0) + 1)
  WHERE id = NEW.batch_id;
END;

-- A chunk Parallel refused for taskrelay's own credentials (401) or credit (402), as a single run is
-- (services/runs.ts waitForOperator): the operator's problem, not the inputs'. It is retried with
-- backoff until its runs' deadline, never given up at SUBMIT_MAX_ATTEMPTS; this is when the current
-- spell of such refusals began (NULL: the last try did not end so). services/batch-submission.ts.
ALTER TABLE batches ADD COLUMN submit_operator_since TEXT;
