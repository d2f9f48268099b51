-- taskrelay: warnings taskrelay itself attaches to a run (a field it passed on that Parallel may not
-- honour, such as source_policy.after_date), kept apart from Parallel's own `warnings`, which every
-- status update from Parallel may replace. JSON array of {type, message, detail}; NULL for none.
ALTER TABLE runs ADD COLUMN relay_warnings TEXT;
