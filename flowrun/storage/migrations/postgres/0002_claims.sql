-- 0002: claims (as SQLite's 0002). A claim is taken once: a schedule's slot, a webhook delivery,
-- a checkpoint's timeout. Whoever inserts the key does the work; a failed one may be taken again.

CREATE TABLE claims (
    key     TEXT PRIMARY KEY,
    at      TEXT NOT NULL,
    status  TEXT NOT NULL,
    json    TEXT NOT NULL
);
CREATE INDEX claims_prefix ON claims (key text_pattern_ops);
