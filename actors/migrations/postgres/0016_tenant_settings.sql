-- A tenant's consent and retention settings, one JSON document per tenant (see
-- `switchboard_actors::consent::ConsentSettings`); no row: the defaults.
CREATE TABLE tenant_settings (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    body       TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
