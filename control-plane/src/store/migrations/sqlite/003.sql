-- v3: job-signing key rotation (public keys and signed statements only).
CREATE TABLE signing_keys (
    key_id TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'next', 'previous', 'retired')),
    created_at INTEGER NOT NULL,
    activated_at INTEGER,
    retired_at INTEGER
);
CREATE UNIQUE INDEX one_active_signing_key ON signing_keys(status) WHERE status = 'active';
CREATE TABLE key_sets (
    version INTEGER PRIMARY KEY,
    statement TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
ALTER TABLE jobs ADD COLUMN key_id TEXT;
