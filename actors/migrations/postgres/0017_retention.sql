-- Retention sweeps read a tenant's oldest rows: indexes that find them without a
-- scan of every tenant's.
CREATE INDEX messages_by_tenant_time ON messages (tenant_id, created_at);
CREATE INDEX media_by_tenant_time ON media (tenant_id, created_at);
