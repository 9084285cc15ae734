-- Commands for a session, routed to the replica running it. The replica that took
-- the API request writes the command here for the owner (woken by NOTIFY on the
-- `switchboard` channel, or its next poll), the owner runs it and writes the
-- answer, and the first replica reads the answer back (woken the same way). A row
-- outlives a lost notification, a listener reconnecting, or either replica
-- dying: the asker times out; rows are swept once old.
CREATE TABLE session_commands (
    id          TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL,
    target      TEXT NOT NULL,
    request     TEXT NOT NULL,
    answer      TEXT,
    created_at  BIGINT NOT NULL,
    taken_at    BIGINT,
    answered_at BIGINT
);
CREATE INDEX session_commands_waiting ON session_commands (target, created_at) WHERE taken_at IS NULL;
