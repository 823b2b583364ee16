-- 0003: chats. A chat's messages are events in `events` under the chat id (gapless seq, like a
-- run's), so the `messages` home of 0001 stays unused; the chat row keeps its owner, the
-- highest seq of its log and when it last changed (Sessions lists chats by it).

ALTER TABLE chats ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE chats ADD COLUMN updated_at TEXT NOT NULL DEFAULT '';
ALTER TABLE chats ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX chats_owner ON chats (workspace, owner, updated_at);
CREATE INDEX chats_updated ON chats (updated_at, id);
