-- Sends that carry more than text (the channel seam): the message answered, and a
-- subject and attachments sealed together as JSON under the master key.
ALTER TABLE messages ADD COLUMN reply_to TEXT;
ALTER TABLE messages ADD COLUMN extras_key_id TEXT;
ALTER TABLE messages ADD COLUMN extras BLOB;
