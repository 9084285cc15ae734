-- What each API key may do: its scopes joined by spaces, or NULL for every scope
-- (keys made before scopes existed keep all of them).
ALTER TABLE api_keys ADD COLUMN scopes TEXT;
