-- Only pending deliveries are looked up by due time (claims) or by their endpoint's
-- order (FIFO endpoints): index just those. The indexes stay the size of the backlog
-- rather than of the history, and a delivery's last status change is one index
-- deletion instead of two moves.
DROP INDEX outbox_due;
CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE status = 'pending';
DROP INDEX outbox_by_endpoint;
CREATE INDEX outbox_by_endpoint ON outbox (endpoint_id, id) WHERE status = 'pending';
