-- A pending file (lazy download) is fetched once however many readers ask at the
-- same time, on whichever replicas: the first takes the fetch until `fetch_until`
-- (unix ms) with one conditional update; the others wait for the row to fill (or
-- for the claim to run out, when the fetching replica died).
ALTER TABLE media ADD COLUMN fetch_until BIGINT NOT NULL DEFAULT 0;
