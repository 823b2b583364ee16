-- 0004: leases (which engine process drives which run) and the engine processes that are alive.

ALTER TABLE runs ADD COLUMN lease_owner TEXT;         -- the engine process driving the run
ALTER TABLE runs ADD COLUMN lease_expires REAL;       -- unix seconds; free once passed
CREATE INDEX runs_runnable ON runs (status, lease_expires);

CREATE TABLE workers (
    id          TEXT PRIMARY KEY,                     -- host:pid:token
    kind        TEXT NOT NULL,                        -- worker | serve | cli | mcp ...
    drives      INTEGER NOT NULL,                     -- 1: it claims runnable runs
    started_at  TEXT NOT NULL,
    expires     REAL NOT NULL                         -- unix seconds; renewed by its heartbeat
);
