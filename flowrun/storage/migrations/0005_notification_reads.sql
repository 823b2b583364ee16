-- 0005: which notifications each person has read (the web's unread badge and Notifications page).

CREATE TABLE notification_reads (
    workspace   TEXT NOT NULL,
    actor       TEXT NOT NULL,                        -- the person (actor id) in that workspace
    note_id     TEXT NOT NULL,                        -- a notification record's id
    read_at     TEXT NOT NULL,
    PRIMARY KEY (workspace, actor, note_id)
);
