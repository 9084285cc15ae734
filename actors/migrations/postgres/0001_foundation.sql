-- Foundation schema (Postgres). Timestamps are unix milliseconds (BIGINT) so that
-- the same queries run unchanged on SQLite and Postgres. Ciphertexts are stored
-- with the id of the master key that sealed them (`*_key_id`).

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    limits      TEXT NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          TEXT,
    key_hash      BYTEA NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    revoked_at    BIGINT
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, id);

CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel        TEXT NOT NULL,
    name           TEXT,
    status         TEXT NOT NULL,
    status_reason  TEXT,
    desired_state  TEXT NOT NULL DEFAULT 'stopped',
    config         TEXT NOT NULL DEFAULT '{}',
    state_key_id   TEXT,
    state          BYTEA,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX sessions_by_tenant ON sessions (tenant_id, id);

CREATE TABLE messages (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    session_id       TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    direction        TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    peer             TEXT NOT NULL,
    status           TEXT NOT NULL,
    idempotency_key  TEXT,
    -- SHA-256 of the request, so a reused Idempotency-Key with another body is refused.
    request_hash     TEXT,
    -- The network's id once sent (outbound) or as received (inbound).
    external_id      TEXT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT,
    body_key_id      TEXT,
    body             BYTEA,
    error            TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX messages_by_session ON messages (session_id, id);
CREATE INDEX messages_queued ON messages (tenant_id, status, id);

-- `seq` is commit order (one event writer per process), which readers that resume
-- from a cursor (SSE, listings) follow; `id` (a ULID) is the public identifier.
CREATE TABLE events (
    seq          BIGSERIAL PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    session_id   TEXT,
    channel      TEXT,
    type         TEXT NOT NULL,
    body_key_id  TEXT NOT NULL,
    body         BYTEA NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX events_by_tenant ON events (tenant_id, seq);
CREATE INDEX events_by_session ON events (session_id, seq);
CREATE INDEX events_by_tenant_time ON events (tenant_id, created_at);

CREATE TABLE webhook_endpoints (
    id                      TEXT PRIMARY KEY,
    tenant_id               TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url                     TEXT NOT NULL,
    description             TEXT,
    event_types             TEXT,
    secret_key_id           TEXT NOT NULL,
    secret                  BYTEA NOT NULL,
    previous_secret_key_id  TEXT,
    previous_secret         BYTEA,
    previous_expires_at     BIGINT,
    status                  TEXT NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
    disabled_reason         TEXT,
    fifo                    BOOLEAN NOT NULL DEFAULT FALSE,
    max_in_flight           BIGINT NOT NULL DEFAULT 8,
    failing_since           BIGINT,
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints (tenant_id, id);

-- One row per (event, endpoint): the delivery's state. `locked_until` is the lease of
-- the dispatcher that claimed it; an expired lease makes the row claimable again.
CREATE TABLE outbox (
    id               BIGSERIAL PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event_id         TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    locked_until     BIGINT,
    last_attempt_at  BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_by_endpoint ON outbox (endpoint_id, status, id);

CREATE TABLE delivery_attempts (
    id                BIGSERIAL PRIMARY KEY,
    outbox_id         BIGINT NOT NULL,
    tenant_id         TEXT NOT NULL,
    event_id          TEXT NOT NULL,
    endpoint_id       TEXT NOT NULL,
    attempted_at      BIGINT NOT NULL,
    status_code       INTEGER,
    latency_ms        BIGINT NOT NULL,
    error             TEXT,
    response_snippet  TEXT
);
CREATE INDEX delivery_attempts_by_event ON delivery_attempts (event_id, id);

-- Who did what. Deliberately without foreign keys: the trail outlives what it describes.
CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    tenant_id   TEXT,
    action      TEXT NOT NULL,
    target      TEXT,
    details     TEXT NOT NULL DEFAULT '{}',
    request_id  TEXT
);
CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id, id);
