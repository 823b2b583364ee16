-- 0006: a change number per record write, so a reader can ask for what changed since it last looked
-- (`Store.records_changed`: the notifications feed polls it every second) instead of reading them all.

ALTER TABLE records ADD COLUMN changed BIGINT NOT NULL DEFAULT 0;

UPDATE records SET changed = numbered.n
FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM records) AS numbered
WHERE records.id = numbered.id;  -- existing records: distinct, increasing, in id order

CREATE INDEX records_changed ON records (kind, changed);
