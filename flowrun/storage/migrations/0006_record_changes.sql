-- 0006: a change number per record write, so a reader can ask for what changed since it last looked
-- (`Store.records_changed`: the notifications feed polls it every second) instead of reading them all.

ALTER TABLE records ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;

UPDATE records SET changed = rowid;  -- existing records: distinct, increasing, in the order they were inserted

CREATE INDEX records_changed ON records (kind, changed);
