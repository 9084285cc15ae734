-- Inbound messages are looked up by the network's id before they are stored, so a
-- message caught up again after a reconnect is stored (and reported) once.
CREATE INDEX messages_by_external_id ON messages (session_id, external_id);
