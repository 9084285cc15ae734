-- Consent: addresses a tenant must never message. An entry names a channel
-- (`whatsapp`, `email`, `linkedin`, `sim`) or `*` for every channel, and an
-- address in its normal form (a phone in E.164, an e-mail address in lower case, a
-- LinkedIn member URN). Every send checks it before any network call.
CREATE TABLE suppressions (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    channel    TEXT NOT NULL,
    address    TEXT NOT NULL,
    reason     TEXT,
    source     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, channel, address)
);
CREATE INDEX suppressions_by_address ON suppressions (tenant_id, address);
