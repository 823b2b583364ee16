-- 0007: which engine process answers in a chat (its agent, its notes about runs): one at a time,
-- on a lease like a run's, so two servers on one database never both answer.

ALTER TABLE chats ADD COLUMN host TEXT;
ALTER TABLE chats ADD COLUMN host_expires DOUBLE PRECISION;
