-- Where an e-mail session is in each folder it follows: the folder's UIDVALIDITY, the
-- highest UID reported, and HIGHESTMODSEQ where the server has CONDSTORE. A reconnect
-- or a restart resumes from here; a changed UIDVALIDITY rebuilds the folder quietly.
CREATE TABLE mailbox_folders (
    session_id     TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    folder         TEXT NOT NULL,
    uid_validity   BIGINT NOT NULL,
    last_uid       BIGINT NOT NULL,
    highest_modseq BIGINT,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (session_id, folder)
);
