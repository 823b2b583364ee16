-- 0001: runs, their steps and event log, decisions, records, usage counters,
-- and minimal homes for the tables later layers fill in (as SQLite's 0001).

CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    workspace   TEXT NOT NULL,
    flow_id     TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,          -- UTC, fixed-width ISO 8601: sorts as text
    version     BIGINT NOT NULL,        -- compare-and-set counter
    last_seq    BIGINT NOT NULL,        -- highest event seq of this run
    json        TEXT NOT NULL,          -- the Run without steps, flow, version and last_seq
    flow        TEXT NOT NULL           -- the Flow template frozen at start: written once
);
CREATE INDEX runs_created ON runs (created_at, id);
CREATE INDEX runs_status ON runs (status, created_at);
CREATE INDEX runs_workspace ON runs (workspace, created_at);
CREATE INDEX runs_flow ON runs (flow_id, created_at);

CREATE TABLE steps (
    run_id  TEXT NOT NULL,
    idx     INTEGER NOT NULL,
    json    TEXT NOT NULL,
    PRIMARY KEY (run_id, idx)
);

CREATE TABLE events (
    run_id  TEXT NOT NULL,
    seq     BIGINT NOT NULL,
    at      TEXT NOT NULL,
    type    TEXT NOT NULL,
    data    TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE decisions (
    decision_id  TEXT PRIMARY KEY,
    run_id       TEXT NOT NULL,
    step         INTEGER NOT NULL,
    json         TEXT NOT NULL
);
CREATE INDEX decisions_run ON decisions (run_id, step);

CREATE TABLE records (
    id    TEXT PRIMARY KEY,
    kind  TEXT NOT NULL,
    json  TEXT NOT NULL
);
CREATE INDEX records_kind ON records (kind, id);

CREATE TABLE usage_counters (
    workspace  TEXT NOT NULL,
    day        TEXT NOT NULL,           -- UTC date, YYYY-MM-DD
    runs       BIGINT NOT NULL,
    PRIMARY KEY (workspace, day)
);

CREATE TABLE flows (id TEXT PRIMARY KEY, updated_at TEXT NOT NULL, json TEXT NOT NULL);
CREATE TABLE chats (id TEXT PRIMARY KEY, workspace TEXT NOT NULL, created_at TEXT NOT NULL, json TEXT NOT NULL);
CREATE TABLE messages (
    chat_id  TEXT NOT NULL,
    seq      BIGINT NOT NULL,
    at       TEXT NOT NULL,
    json     TEXT NOT NULL,
    PRIMARY KEY (chat_id, seq)
);
CREATE TABLE integrations (id TEXT PRIMARY KEY, workspace TEXT NOT NULL, kind TEXT NOT NULL, json TEXT NOT NULL);
CREATE TABLE schedules (id TEXT PRIMARY KEY, flow_id TEXT NOT NULL, json TEXT NOT NULL);
CREATE TABLE webhook_deliveries (id TEXT PRIMARY KEY, received_at TEXT NOT NULL, json TEXT NOT NULL);
CREATE TABLE tokens (id TEXT PRIMARY KEY, json TEXT NOT NULL);
