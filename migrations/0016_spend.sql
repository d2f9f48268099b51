-- taskrelay: spend (issue 16). What each run costs, a monthly budget per key, and a rollup of
-- accepted runs that GET /v1/usage reads instead of the runs.
--
-- Amounts are integer micro-dollars (1 USD = 1,000,000): sums of $0.005 prices stay exact, and a
-- budget check compares integers.

-- The price of the run's processor when it was stored (src/pricing/prices.ts). It is what the run
-- costs once Parallel accepts it (parallel_run_id set); a run Parallel refused costs nothing.
ALTER TABLE runs ADD COLUMN cost_micro_usd INTEGER NOT NULL DEFAULT 0;
-- The month ('YYYY-MM', UTC) whose budget the run's cost was reserved against; NULL: not reserved
-- (the key had no budget). Released from that month if Parallel never accepts the run.
ALTER TABLE runs ADD COLUMN spend_month TEXT;

ALTER TABLE api_keys ADD COLUMN monthly_budget_micro_usd INTEGER;  -- NULL: no budget
ALTER TABLE api_keys ADD COLUMN budget_month TEXT;                  -- the month budget_spent counts
-- Reserved this month: runs Parallel accepted plus runs still waiting to be accepted. One guarded
-- UPDATE reserves a run's cost (db/spend.ts reserveSpend), so concurrent creates cannot overspend.
ALTER TABLE api_keys ADD COLUMN budget_spent_micro_usd INTEGER NOT NULL DEFAULT 0;

-- One row per key, UTC day, scope and processor: an UPSERT when Parallel accepts a run (one row
-- written per run). The primary key is the only index (WITHOUT ROWID: the table is its key's
-- b-tree), so the UPSERT writes one row and a usage query reads the rows of its days, whatever
-- the number of runs.
CREATE TABLE usage_rollup (
  api_key_id TEXT NOT NULL,
  day TEXT NOT NULL,                   -- YYYY-MM-DD (UTC) of Parallel's acceptance
  scope TEXT NOT NULL,                 -- the run's schedule_id or batch_id; '' for a run asked for directly
  processor TEXT NOT NULL,
  runs INTEGER NOT NULL,
  cost_micro_usd INTEGER NOT NULL,
  PRIMARY KEY (api_key_id, day, scope, processor)
) WITHOUT ROWID;
