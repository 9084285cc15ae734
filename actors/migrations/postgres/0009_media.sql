-- The media store: one row per stored file of a tenant, content-addressed (one
-- row per tenant and SHA-256 of the plaintext: the same file stored twice is kept
-- once). The bytes live in the media backend under `blob_key`, sealed a 64 KiB
-- segment at a time (crypto::stream) under the master key `key_id`, bound to the
-- row's tenant and id. `size` is the plaintext length.
CREATE TABLE media (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    sha256     TEXT NOT NULL,
    mimetype   TEXT NOT NULL,
    size       BIGINT NOT NULL,
    filename   TEXT,
    key_id     TEXT NOT NULL,
    blob_key   TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX media_by_content ON media (tenant_id, sha256);
CREATE INDEX media_by_age ON media (created_at);
