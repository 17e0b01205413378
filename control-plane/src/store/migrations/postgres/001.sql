-- Schema v1: everything the SQLite schema has reached at its v7, in PostgreSQL types.
CREATE TABLE agents (
    name TEXT PRIMARY KEY,
    enrolled_at BIGINT NOT NULL,
    cert_not_after BIGINT NOT NULL,
    last_seen BIGINT,
    version TEXT,
    connections TEXT NOT NULL DEFAULT '[]',
    revoked_at BIGINT,
    pool TEXT
);
CREATE INDEX agents_by_pool ON agents(pool) WHERE pool IS NOT NULL;
CREATE TABLE enrol_tokens (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    pool TEXT
);
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'editor', 'viewer')),
    password_hash TEXT,
    created_at BIGINT NOT NULL,
    disabled_at BIGINT,
    last_sign_in BIGINT
);
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    last_used BIGINT,
    user_id TEXT REFERENCES users(id),
    name TEXT NOT NULL DEFAULT '',
    scopes TEXT NOT NULL DEFAULT '*',
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE TABLE signing_keys (
    key_id TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'next', 'previous', 'retired')),
    created_at BIGINT NOT NULL,
    activated_at BIGINT,
    retired_at BIGINT
);
CREATE UNIQUE INDEX one_active_signing_key ON signing_keys(status) WHERE status = 'active';
CREATE TABLE key_sets (
    version BIGINT PRIMARY KEY,
    statement TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE jobs (
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    pool TEXT,
    connection TEXT NOT NULL,
    state TEXT NOT NULL,
    envelope TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    lease_until BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    finished_at BIGINT,
    report_sha256 TEXT,
    reason_code TEXT,
    reason_message TEXT,
    stats TEXT,
    content_type TEXT,
    body BYTEA,
    key_id TEXT,
    cancel_requested_at BIGINT,
    cancel_sent_at BIGINT,
    owner TEXT,
    project_id TEXT,
    query_index BIGINT,
    customer TEXT
);
CREATE INDEX jobs_by_agent_state ON jobs(agent, state, created_at);
CREATE INDEX jobs_by_pool_state ON jobs(pool, state, created_at) WHERE pool IS NOT NULL;
CREATE INDEX jobs_by_project ON jobs(project_id, query_index, customer, created_at);
CREATE INDEX jobs_by_end ON jobs(finished_at);
CREATE INDEX jobs_by_owner ON jobs(owner, created_at);
CREATE INDEX jobs_open ON jobs(expires_at) WHERE state IN ('queued', 'leased');
CREATE TABLE groups (
    name TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);
CREATE TABLE group_members (
    group_name TEXT NOT NULL REFERENCES groups(name) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (group_name, user_id)
);
CREATE TABLE shares (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    connection TEXT NOT NULL,
    user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
    group_name TEXT REFERENCES groups(name) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    CHECK ((user_id IS NULL) != (group_name IS NULL))
);
CREATE UNIQUE INDEX shares_unique ON shares(agent, connection, COALESCE(user_id, ''), COALESCE(group_name, ''));
CREATE TABLE sessions (
    id_sha256 TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    owner TEXT NOT NULL REFERENCES users(id),
    queries TEXT NOT NULL,
    embed_epoch BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE project_grants (
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    access TEXT NOT NULL CHECK (access IN ('view-app', 'view-logic', 'edit')),
    PRIMARY KEY (project_id, user_id)
);
CREATE TABLE cloud_audit (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    credential TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL,
    status BIGINT NOT NULL,
    remote TEXT,
    detail TEXT
);
CREATE INDEX cloud_audit_by_time ON cloud_audit(at);
CREATE TABLE oidc_identities (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
