CREATE TABLE agents (
    name TEXT PRIMARY KEY,
    enrolled_at INTEGER NOT NULL,
    cert_not_after INTEGER NOT NULL,
    last_seen INTEGER,
    version TEXT,
    connections TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE enrol_tokens (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used INTEGER
);
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    connection TEXT NOT NULL,
    state TEXT NOT NULL,
    envelope TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    lease_until INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    finished_at INTEGER,
    report_sha256 TEXT,
    reason_code TEXT,
    reason_message TEXT,
    stats TEXT,
    content_type TEXT,
    body BLOB
);
CREATE INDEX jobs_by_agent_state ON jobs(agent, state, created_at);
