-- A session's secrets (e-mail passwords, OAuth2 tokens): its whole configuration,
-- sealed; `config` then holds only what may be shown (no secret in it).
ALTER TABLE sessions ADD COLUMN secrets_key_id TEXT;
ALTER TABLE sessions ADD COLUMN secrets BYTEA;
