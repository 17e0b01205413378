-- v2: agent revocation.
ALTER TABLE agents ADD COLUMN revoked_at INTEGER;
