-- Lazy media downloads (media.download = "lazy"): a received file can be recorded
-- before its bytes are fetched. Such a row is pending: its `blob_key` and `key_id`
-- are empty, and `session_id` + `source_ref` (the channel's message id) say where to
-- fetch it from on its first read. A pending row takes no room in the tenant's quota.
-- Sealed bytes are bound to their tenant and `blob_key` (which was the row id for
-- every file stored before this migration, and stays so for uploads).
ALTER TABLE media ADD COLUMN session_id TEXT;
ALTER TABLE media ADD COLUMN source_ref TEXT;
