-- Knowledge base, reply settings, drafts and the RAG actor's work queue (SQLite).

-- Documents of a tenant's knowledge base. Their passages and vectors live in the
-- vector store; this row is what lists and deletes go by.
CREATE TABLE kb_documents (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    title       TEXT NOT NULL,
    format      TEXT NOT NULL,
    bytes       BIGINT NOT NULL,
    chunks      BIGINT NOT NULL DEFAULT 0,
    model       TEXT NOT NULL,
    -- `indexing` until its vectors are stored; left over after a crash, it is cleaned up.
    status      TEXT NOT NULL CHECK (status IN ('indexing', 'ready')),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX kb_documents_by_tenant ON kb_documents (tenant_id, id);

-- How the RAG actor answers a session's inbound messages.
CREATE TABLE reply_settings (
    session_id  TEXT PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    mode        TEXT NOT NULL CHECK (mode IN ('off', 'draft', 'auto')),
    settings    TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX reply_settings_on ON reply_settings (tenant_id, mode);

-- Inbound messages waiting for the RAG actor, written with the event itself.
CREATE TABLE rag_jobs (
    event_id         TEXT PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
    tenant_id        TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    last_error       TEXT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX rag_jobs_due ON rag_jobs (next_attempt_at);

-- Replies waiting for a person (reply mode `draft`, or a contact auto-replies may not reach).
CREATE TABLE drafts (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    session_id   TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    event_id     TEXT NOT NULL UNIQUE,
    peer         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    reason       TEXT NOT NULL,
    intent       TEXT NOT NULL,
    source       TEXT NOT NULL,
    -- Sealed JSON {"question","text"} (message bodies are encrypted at rest).
    body_key_id  TEXT NOT NULL,
    body         BLOB NOT NULL,
    message_id   TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX drafts_by_tenant ON drafts (tenant_id, status, id);
