-- 0003: chats (as SQLite's 0003). A chat's messages are events in `events` under the chat id.

ALTER TABLE chats ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE chats ADD COLUMN updated_at TEXT NOT NULL DEFAULT '';
ALTER TABLE chats ADD COLUMN last_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX chats_owner ON chats (workspace, owner, updated_at);
CREATE INDEX chats_updated ON chats (updated_at, id);
