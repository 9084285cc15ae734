-- Scale-out: replicas of the gateway on one database share the sessions by lease.
-- Each replica has a row it heartbeats; a session is run only by the replica named
-- in its `owner`, until `lease_expires_at` (unix ms), which the owner renews. A
-- replica that stops heartbeating lets its leases expire and another takes them;
-- every take bumps `lease_epoch`, and the writes that matter (saved login, status,
-- network details) carry the epoch they were made under, so a replica that lost a
-- lease cannot overwrite its successor's.
CREATE TABLE replicas (
    id           TEXT PRIMARY KEY,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
ALTER TABLE sessions ADD COLUMN owner TEXT;
ALTER TABLE sessions ADD COLUMN lease_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN lease_expires_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX sessions_by_owner ON sessions (owner);
