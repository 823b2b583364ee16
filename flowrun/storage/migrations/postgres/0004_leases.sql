-- 0004: leases (which engine process drives which run) and the engine processes that are alive.
-- Times are unix seconds from the database's clock, so machines with skewed clocks agree.

ALTER TABLE runs ADD COLUMN lease_owner TEXT;
ALTER TABLE runs ADD COLUMN lease_expires DOUBLE PRECISION;
CREATE INDEX runs_runnable ON runs (status, lease_expires);

CREATE TABLE workers (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    drives      BOOLEAN NOT NULL,
    started_at  TEXT NOT NULL,
    expires     DOUBLE PRECISION NOT NULL
);
