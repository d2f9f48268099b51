-- Queue messages whose work kept failing (src/cron/consumer.ts): one row per item, however often it
-- failed, so a poison item shows once, with how many of its messages gave up. The item's own row
-- (run, delivery, schedule) stays due: its next message is sent by the cron tick as usual.
CREATE TABLE dead_letters (
  kind TEXT NOT NULL,
  item_id TEXT NOT NULL,
  body TEXT NOT NULL,
  messages INTEGER NOT NULL DEFAULT 1,
  first_dead_at TEXT NOT NULL,
  last_dead_at TEXT NOT NULL,
  PRIMARY KEY (kind, item_id)
);
