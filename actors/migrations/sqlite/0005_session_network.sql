-- What the network says about a session's login (JSON): for WhatsApp the WhatsApp Web
-- version the page runs and the account's own ids. Refreshed on every login.
ALTER TABLE sessions ADD COLUMN network TEXT;
