-- taskrelay: a delivery attempt's timeline events live in its attempt row (issue 13, fewer D1 writes).
-- Each attempt wrote its row and, to put `delivery_attempted` and its outcome (`delivery_succeeded`,
-- `delivery_dead`) on the run's timeline, a second row: the run's. Now the attempt row carries them,
-- and the timeline reads them back in place (db/run-events.ts listRunEvents):
--   * events: the attempt's events, a JSON array of {at, kind, detail}, exactly as the run's row
--     held them before;
--   * timeline_after: the run's timeline_count when the attempt was recorded, i.e. the events come
--     right after the run's event at that position (write order, whatever the clocks say).
-- Attempts recorded before this migration have both NULL: their events are in the run's row already.
ALTER TABLE delivery_attempts ADD COLUMN events TEXT;
ALTER TABLE delivery_attempts ADD COLUMN timeline_after INTEGER;
