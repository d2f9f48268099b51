-- taskrelay: a row the cron tick handed to the queue knows it (issue 14). The tick's claim sets
-- dispatch_lease to the lease it gives the row; a consumer's take clears it. So while lease_until =
-- dispatch_lease, no consumer has taken the row since its message (or messages) were sent, and any of
-- them may take it: the first to arrive works it, the rest find it taken. `dispatches` counts the
-- hand-outs in a row that no consumer took; each doubles the next dispatch lease (db/dispatch.ts), so
-- a backlog that outlives the lease is not sent again every tick.
-- No index: both are set by the statements that already write the row (no extra rows written).
ALTER TABLE runs ADD COLUMN dispatch_lease TEXT;
ALTER TABLE runs ADD COLUMN dispatches INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN dispatch_lease TEXT;
ALTER TABLE deliveries ADD COLUMN dispatches INTEGER NOT NULL DEFAULT 0;
ALTER TABLE schedules ADD COLUMN dispatch_lease TEXT;
ALTER TABLE schedules ADD COLUMN dispatches INTEGER NOT NULL DEFAULT 0;
