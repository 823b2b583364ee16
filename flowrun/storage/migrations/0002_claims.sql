-- 0002: claims. A claim is taken once: a schedule's slot, a webhook delivery, a checkpoint's
-- timeout. Whoever inserts the key does the work; a claim marked failed may be taken again.

CREATE TABLE claims (
    key     TEXT PRIMARY KEY,           -- e.g. "schedule:nightly:2026-12-03T09:00:00+00:00"
    at      TEXT NOT NULL,              -- when it was (last) taken, UTC
    status  TEXT NOT NULL,              -- taken | done | failed | refused
    json    TEXT NOT NULL
);
CREATE INDEX claims_prefix ON claims (key);
