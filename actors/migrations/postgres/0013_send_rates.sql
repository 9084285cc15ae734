-- A tenant's send rate shared by every replica: the theoretical arrival time
-- (GCRA, unix microseconds) of the tenant's next send. Each send takes its slot
-- with one conditional upsert, so a tenant limited to N sends/s gets N/s however
-- many replicas run its sessions.
CREATE TABLE send_rates (
    tenant_id TEXT PRIMARY KEY,
    tat       BIGINT NOT NULL
);
