-- What each LinkedIn account did that LinkedIn counts (messages, invitations,
-- accepted invitations, profile views), for its safety caps: one row per action,
-- written before the network call, so a crash never under-counts. `ref_id` is our
-- id for it where there is one (`msg_…`): an action retried after a crash finds its
-- row and is not counted twice.
CREATE TABLE account_actions (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    ref_id     TEXT,
    at         BIGINT NOT NULL
);
CREATE INDEX account_actions_by_time ON account_actions (session_id, at);
CREATE UNIQUE INDEX account_actions_by_ref ON account_actions (session_id, ref_id);
