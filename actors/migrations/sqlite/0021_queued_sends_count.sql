-- How many sends each tenant has waiting (queued or being sent), kept by triggers in
-- the same transaction as the change: the queued-sends limit reads one row instead
-- of counting a queue that can hold many thousands.
CREATE TABLE queued_sends (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    queued     BIGINT NOT NULL
);
INSERT INTO queued_sends (tenant_id, queued)
    SELECT tenant_id, COUNT(*) FROM messages
    WHERE direction = 'outbound' AND status IN ('queued', 'sending') GROUP BY tenant_id;

CREATE TRIGGER queued_sends_insert AFTER INSERT ON messages
    WHEN NEW.direction = 'outbound' AND NEW.status IN ('queued', 'sending')
BEGIN
    INSERT INTO queued_sends (tenant_id, queued) VALUES (NEW.tenant_id, 1)
        ON CONFLICT (tenant_id) DO UPDATE SET queued = queued + 1;
END;
CREATE TRIGGER queued_sends_enter AFTER UPDATE OF status ON messages
    WHEN NEW.direction = 'outbound' AND OLD.status NOT IN ('queued', 'sending')
        AND NEW.status IN ('queued', 'sending')
BEGIN
    INSERT INTO queued_sends (tenant_id, queued) VALUES (NEW.tenant_id, 1)
        ON CONFLICT (tenant_id) DO UPDATE SET queued = queued + 1;
END;
CREATE TRIGGER queued_sends_leave AFTER UPDATE OF status ON messages
    WHEN NEW.direction = 'outbound' AND OLD.status IN ('queued', 'sending')
        AND NEW.status NOT IN ('queued', 'sending')
BEGIN
    UPDATE queued_sends SET queued = queued - 1 WHERE tenant_id = NEW.tenant_id;
END;
CREATE TRIGGER queued_sends_delete AFTER DELETE ON messages
    WHEN OLD.direction = 'outbound' AND OLD.status IN ('queued', 'sending')
BEGIN
    UPDATE queued_sends SET queued = queued - 1 WHERE tenant_id = OLD.tenant_id;
END;
