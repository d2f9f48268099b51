-- taskrelay: the overview's hourly rollup (issue 16). The dashboard's overview charts read one row per
-- (key, hour) from here, never the runs: 168 rows a key for 7 days, whatever the history holds.
--
-- Kept by triggers, in the same statement as the change they count, so every path that finishes a run
-- (webhook, poll, expiry, refused or failed submissions, result fetch given up, batch runs) and every
-- delivery that ends is counted exactly once, from the row's true old and new status:
--   * a run reaching a terminal status adds 1 to its outcome in the hour of its finished_at;
--   * a terminal run moving to another terminal status (a late completion of an expired run, a
--     completed run whose result is not found) takes 1 back from its old outcome in the old hour;
--   * a delivery's first series ending (succeeded or dead) adds 1 to its outcome and, when it
--     succeeded, 1 to its completion → callback latency bucket (now − the run's finished_at).
-- Each writes one row (WITHOUT ROWID, no secondary index): 2 rows per run with a callback, 1 without.
--
-- Latency buckets: latency_00 is [0, 10 ms); latency_NN (1..46) is [edge NN-1, edge NN) with
-- edge k = round(10 ms × 2^(k/2)) (10, 14, 20, 28, 40, … 83,886,080 ms); latency_47 is ≥ 23.3 h. The same
-- edges are LATENCY_EDGES_MS in src/db/overview.ts (a worker test checks they agree). A percentile read
-- from them is within one bucket of the true one: off by a factor of at most √2 (about 41 %).
-- Trigger bodies are one statement each, without CASE, so wrangler's statement splitter keeps them whole.

CREATE TABLE overview_hours (
  api_key_id TEXT NOT NULL,
  hour TEXT NOT NULL,                  -- UTC, 'YYYY-MM-DDTHH' (the first 13 characters of an ISO time)
  runs_completed INTEGER NOT NULL DEFAULT 0,
  runs_failed INTEGER NOT NULL DEFAULT 0,
  runs_cancelled INTEGER NOT NULL DEFAULT 0,
  runs_rejected INTEGER NOT NULL DEFAULT 0,
  runs_expired INTEGER NOT NULL DEFAULT 0,
  deliveries_first_try INTEGER NOT NULL DEFAULT 0, -- succeeded on attempt 1
  deliveries_retried INTEGER NOT NULL DEFAULT 0,   -- succeeded on a later attempt
  deliveries_dead INTEGER NOT NULL DEFAULT 0,
  latency_00 INTEGER NOT NULL DEFAULT 0,
  latency_01 INTEGER NOT NULL DEFAULT 0,
  latency_02 INTEGER NOT NULL DEFAULT 0,
  latency_03 INTEGER NOT NULL DEFAULT 0,
  latency_04 INTEGER NOT NULL DEFAULT 0,
  latency_05 INTEGER NOT NULL DEFAULT 0,
  latency_06 INTEGER NOT NULL DEFAULT 0,
  latency_07 INTEGER NOT NULL DEFAULT 0,
  latency_08 INTEGER NOT NULL DEFAULT 0,
  latency_09 INTEGER NOT NULL DEFAULT 0,
  latency_10 INTEGER NOT NULL DEFAULT 0,
  latency_11 INTEGER NOT NULL DEFAULT 0,
  latency_12 INTEGER NOT NULL DEFAULT 0,
  latency_13 INTEGER NOT NULL DEFAULT 0,
  latency_14 INTEGER NOT NULL DEFAULT 0,
  latency_15 INTEGER NOT NULL DEFAULT 0,
  latency_16 INTEGER NOT NULL DEFAULT 0,
  latency_17 INTEGER NOT NULL DEFAULT 0,
  latency_18 INTEGER NOT NULL DEFAULT 0,
  latency_19 INTEGER NOT NULL DEFAULT 0,
  latency_20 INTEGER NOT NULL DEFAULT 0,
  latency_21 INTEGER NOT NULL DEFAULT 0,
  latency_22 INTEGER NOT NULL DEFAULT 0,
  latency_23 INTEGER NOT NULL DEFAULT 0,
  latency_24 INTEGER NOT NULL DEFAULT 0,
  latency_25 INTEGER NOT NULL DEFAULT 0,
  latency_26 INTEGER NOT NULL DEFAULT 0,
  latency_27 INTEGER NOT NULL DEFAULT 0,
  latency_28 INTEGER NOT NULL DEFAULT 0,
  latency_29 INTEGER NOT NULL DEFAULT 0,
  latency_30 INTEGER NOT NULL DEFAULT 0,
  latency_31 INTEGER NOT NULL DEFAULT 0,
  latency_32 INTEGER NOT NULL DEFAULT 0,
  latency_33 INTEGER NOT NULL DEFAULT 0,
  latency_34 INTEGER NOT NULL DEFAULT 0,
  latency_35 INTEGER NOT NULL DEFAULT 0,
  latency_36 INTEGER NOT NULL DEFAULT 0,
  latency_37 INTEGER NOT NULL DEFAULT 0,
  latency_38 INTEGER NOT NULL DEFAULT 0,
  latency_39 INTEGER NOT NULL DEFAULT 0,
  latency_40 INTEGER NOT NULL DEFAULT 0,
  latency_41 INTEGER NOT NULL DEFAULT 0,
  latency_42 INTEGER NOT NULL DEFAULT 0,
  latency_43 INTEGER NOT NULL DEFAULT 0,
  latency_44 INTEGER NOT NULL DEFAULT 0,
  latency_45 INTEGER NOT NULL DEFAULT 0,
  latency_46 INTEGER NOT NULL DEFAULT 0,
  latency_47 INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (api_key_id, hour)
) WITHOUT ROWID;

CREATE TRIGGER overview_run_inserted_finished AFTER INSERT ON runs
WHEN NEW.status IN ('completed', 'failed', 'cancelled', 'rejected', 'expired')
BEGIN
  INSERT INTO overview_hours (api_key_id, hour, runs_completed, runs_failed, runs_cancelled, runs_rejected, runs_expired)
  VALUES (NEW.api_key_id, substr(COALESCE(NEW.finished_at, NEW.updated_at), 1, 13),
          NEW.status = 'completed', NEW.status = 'failed', NEW.status = 'cancelled',
          NEW.status = 'rejected', NEW.status = 'expired')
  ON CONFLICT (api_key_id, hour) DO UPDATE SET
    runs_completed = runs_completed + excluded.runs_completed, runs_failed = runs_failed + excluded.runs_failed,
    runs_cancelled = runs_cancelled + excluded.runs_cancelled, runs_rejected = runs_rejected + excluded.runs_rejected,
    runs_expired = runs_expired + excluded.runs_expired;
END;

CREATE TRIGGER overview_run_finished AFTER UPDATE OF status ON runs
WHEN NEW.status IN ('completed', 'failed', 'cancelled', 'rejected', 'expired') AND NEW.status IS NOT OLD.status
BEGIN
  INSERT INTO overview_hours (api_key_id, hour, runs_completed, runs_failed, runs_cancelled, runs_rejected, runs_expired)
  VALUES (NEW.api_key_id, substr(COALESCE(NEW.finished_at, NEW.updated_at), 1, 13),
          NEW.status = 'completed', NEW.status = 'failed', NEW.status = 'cancelled',
          NEW.status = 'rejected', NEW.status = 'expired')
  ON CONFLICT (api_key_id, hour) DO UPDATE SET
    runs_completed = runs_completed + excluded.runs_completed, runs_failed = runs_failed + excluded.runs_failed,
    runs_cancelled = runs_cancelled + excluded.runs_cancelled, runs_rejected = runs_rejected + excluded.runs_rejected,
    runs_expired = runs_expired + excluded.runs_expired;
END;

CREATE TRIGGER overview_run_refinished AFTER UPDATE OF status ON runs
WHEN OLD.status IN ('completed', 'failed', 'cancelled', 'rejected', 'expired') AND NEW.status IS NOT OLD.status
BEGIN
  UPDATE overview_hours SET
    runs_completed = runs_completed - (OLD.status = 'completed'), runs_failed = runs_failed - (OLD.status = 'failed'),
    runs_cancelled = runs_cancelled - (OLD.status = 'cancelled'), runs_rejected = runs_rejected - (OLD.status = 'rejected'),
    runs_expired = runs_expired - (OLD.status = 'expired')
  WHERE api_key_id = OLD.api_key_id AND hour = substr(COALESCE(OLD.finished_at, OLD.updated_at), 1, 13);
END;

CREATE TRIGGER overview_delivery_ended AFTER UPDATE OF status ON deliveries
WHEN OLD.status = 'pending' AND NEW.status IN ('succeeded', 'dead') AND NEW.series = 1
BEGIN
  INSERT INTO overview_hours (api_key_id, hour, deliveries_first_try, deliveries_retried, deliveries_dead,
    latency_00, latency_01, latency_02, latency_03, latency_04, latency_05, latency_06, latency_07,
    latency_08, latency_09, latency_10, latency_11, latency_12, latency_13, latency_14, latency_15,
    latency_16, latency_17, latency_18, latency_19, latency_20, latency_21, latency_22, latency_23,
    latency_24, latency_25, latency_26, latency_27, latency_28, latency_29, latency_30, latency_31,
    latency_32, latency_33, latency_34, latency_35, latency_36, latency_37, latency_38, latency_39,
    latency_40, latency_41, latency_42, latency_43, latency_44, latency_45, latency_46, latency_47)
  SELECT NEW.api_key_id, substr(NEW.updated_at, 1, 13),
    NEW.status = 'succeeded' AND NEW.attempt_count <= 1,
    NEW.status = 'succeeded' AND NEW.attempt_count > 1,
    NEW.status = 'dead',
    ok AND b = 0, ok AND b = 1, ok AND b = 2, ok AND b = 3, ok AND b = 4, ok AND b = 5,
    ok AND b = 6, ok AND b = 7, ok AND b = 8, ok AND b = 9, ok AND b = 10, ok AND b = 11,
    ok AND b = 12, ok AND b = 13, ok AND b = 14, ok AND b = 15, ok AND b = 16, ok AND b = 17,
    ok AND b = 18, ok AND b = 19, ok AND b = 20, ok AND b = 21, ok AND b = 22, ok AND b = 23,
    ok AND b = 24, ok AND b = 25, ok AND b = 26, ok AND b = 27, ok AND b = 28, ok AND b = 29,
    ok AND b = 30, ok AND b = 31, ok AND b = 32, ok AND b = 33, ok AND b = 34, ok AND b = 35,
    ok AND b = 36, ok AND b = 37, ok AND b = 38, ok AND b = 39, ok AND b = 40, ok AND b = 41,
    ok AND b = 42, ok AND b = 43, ok AND b = 44, ok AND b = 45, ok AND b = 46, ok AND b = 47
  FROM (
    SELECT NEW.status = 'succeeded' AS ok, COALESCE((
      SELECT
          (ms >= 10) + (ms >= 14) + (ms >= 20) + (ms >= 28) + (ms >= 40) + (ms >= 57) + (ms >= 80) + (ms >= 113) +
          (ms >= 160) + (ms >= 226) + (ms >= 320) + (ms >= 453) + (ms >= 640) + (ms >= 905) + (ms >= 1280) + (ms >= 1810) +
          (ms >= 2560) + (ms >= 3620) + (ms >= 5120) + (ms >= 7241) + (ms >= 10240) + (ms >= 14482) + (ms >= 20480) + (ms >= 28963) +
          (ms >= 40960) + (ms >= 57926) + (ms >= 81920) + (ms >= 115852) + (ms >= 163840) + (ms >= 231705) + (ms >= 327680) + (ms >= 463410) +
          (ms >= 655360) + (ms >= 926819) + (ms >= 1310720) + (ms >= 1853638) + (ms >= 2621440) + (ms >= 3707276) + (ms >= 5242880) + (ms >= 7414552) +
          (ms >= 10485760) + (ms >= 14829104) + (ms >= 20971520) + (ms >= 29658208) + (ms >= 41943040) + (ms >= 59316416) + (ms >= 83886080)
      FROM (SELECT ROUND((julianday(NEW.updated_at) - julianday(finished_at)) * 86400000.0) AS ms
            FROM runs WHERE id = NEW.run_id)), -1) AS b
  )
  WHERE true
  ON CONFLICT (api_key_id, hour) DO UPDATE SET
    deliveries_first_try = deliveries_first_try + excluded.deliveries_first_try, deliveries_retried = deliveries_retried + excluded.deliveries_retried,
    deliveries_dead = deliveries_dead + excluded.deliveries_dead, latency_00 = latency_00 + excluded.latency_00,
    latency_01 = latency_01 + excluded.latency_01, latency_02 = latency_02 + excluded.latency_02,
    latency_03 = latency_03 + excluded.latency_03, latency_04 = latency_04 + excluded.latency_04,
    latency_05 = latency_05 + excluded.latency_05, latency_06 = latency_06 + excluded.latency_06,
    latency_07 = latency_07 + excluded.latency_07, latency_08 = latency_08 + excluded.latency_08,
    latency_09 = latency_09 + excluded.latency_09, latency_10 = latency_10 + excluded.latency_10,
    latency_11 = latency_11 + excluded.latency_11, latency_12 = latency_12 + excluded.latency_12,
    latency_13 = latency_13 + excluded.latency_13, latency_14 = latency_14 + excluded.latency_14,
    latency_15 = latency_15 + excluded.latency_15, latency_16 = latency_16 + excluded.latency_16,
    latency_17 = latency_17 + excluded.latency_17, latency_18 = latency_18 + excluded.latency_18,
    latency_19 = latency_19 + excluded.latency_19, latency_20 = latency_20 + excluded.latency_20,
    latency_21 = latency_21 + excluded.latency_21, latency_22 = latency_22 + excluded.latency_22,
    latency_23 = latency_23 + excluded.latency_23, latency_24 = latency_24 + excluded.latency_24,
    latency_25 = latency_25 + excluded.latency_25, latency_26 = latency_26 + excluded.latency_26,
    latency_27 = latency_27 + excluded.latency_27, latency_28 = latency_28 + excluded.latency_28,
    latency_29 = latency_29 + excluded.latency_29, latency_30 = latency_30 + excluded.latency_30,
    latency_31 = latency_31 + excluded.latency_31, latency_32 = latency_32 + excluded.latency_32,
    latency_33 = latency_33 + excluded.latency_33, latency_34 = latency_34 + excluded.latency_34,
    latency_35 = latency_35 + excluded.latency_35, latency_36 = latency_36 + excluded.latency_36,
    latency_37 = latency_37 + excluded.latency_37, latency_38 = latency_38 + excluded.latency_38,
    latency_39 = latency_39 + excluded.latency_39, latency_40 = latency_40 + excluded.latency_40,
    latency_41 = latency_41 + excluded.latency_41, latency_42 = latency_42 + excluded.latency_42,
    latency_43 = latency_43 + excluded.latency_43, latency_44 = latency_44 + excluded.latency_44,
    latency_45 = latency_45 + excluded.latency_45, latency_46 = latency_46 + excluded.latency_46,
    latency_47 = latency_47 + excluded.latency_47;
END;
