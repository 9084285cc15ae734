-- How many sends each tenant has waiting (queued or being sent), kept by a trigger in
-- the same transaction as the change: the queued-sends limit reads one row instead
-- of counting a queue that can hold many thousands.
CREATE TABLE queued_sends (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    queued     BIGINT NOT NULL
);
INSERT INTO queued_sends (tenant_id, queued)
    SELECT tenant_id, COUNT(*) FROM messages
    WHERE direction = 'outbound' AND status IN ('queued', 'sending') GROUP BY tenant_id;

CREATE FUNCTION queued_sends_count() RETURNS trigger AS $$
DECLARE
    was BOOLEAN := FALSE;
    is_now BOOLEAN := FALSE;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        was := OLD.direction = 'outbound' AND OLD.status IN ('queued', 'sending');
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        is_now := NEW.direction = 'outbound' AND NEW.status IN ('queued', 'sending');
    END IF;
    IF is_now AND NOT was THEN
        INSERT INTO queued_sends (tenant_id, queued) VALUES (NEW.tenant_id, 1)
            ON CONFLICT (tenant_id) DO UPDATE SET queued = queued_sends.queued + 1;
    ELSIF was AND NOT is_now THEN
        UPDATE queued_sends SET queued = queued - 1 WHERE tenant_id = OLD.tenant_id;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER queued_sends_count AFTER INSERT OR UPDATE OF status OR DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION queued_sends_count();
