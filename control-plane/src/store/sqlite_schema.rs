//! The SQLite backend's schema: migrations in order, each run once in its own
//! transaction with the version bump (`PRAGMA user_version`).

/// Current schema version (PRAGMA user_version).
pub(super) const SCHEMA_VERSION: i64 = 9;

const SCHEMA_V1: &str = "
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
";

/// v2: agent revocation.
const SCHEMA_V2: &str = "ALTER TABLE agents ADD COLUMN revoked_at INTEGER;";

/// v3: job-signing key rotation (public keys and signed statements only).
const SCHEMA_V3: &str = "
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
";

/// v4: job cancellation (when a user asked, when the agent was last told).
const SCHEMA_V4: &str = "
ALTER TABLE jobs ADD COLUMN cancel_requested_at INTEGER;
ALTER TABLE jobs ADD COLUMN cancel_sent_at INTEGER;
";

/// v5: access control (users, groups, shares, sessions, scoped API tokens, projects and
/// grants), the control plane's audit log, and who dispatched each job. Results are
/// sealed from now on: bodies stored in clear by earlier versions are dropped.
const SCHEMA_V5: &str = "
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'editor', 'viewer')),
    password_hash TEXT,
    created_at INTEGER NOT NULL,
    disabled_at INTEGER,
    last_sign_in INTEGER
);
CREATE TABLE groups (
    name TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
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
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    CHECK ((user_id IS NULL) != (group_name IS NULL))
);
CREATE UNIQUE INDEX shares_unique ON shares(agent, connection, COALESCE(user_id, ''), COALESCE(group_name, ''));
CREATE TABLE sessions (
    id_sha256 TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    owner TEXT NOT NULL REFERENCES users(id),
    queries TEXT NOT NULL,
    embed_epoch INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE project_grants (
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    access TEXT NOT NULL CHECK (access IN ('view-app', 'view-logic', 'edit')),
    PRIMARY KEY (project_id, user_id)
);
CREATE TABLE cloud_audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    credential TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL,
    status INTEGER NOT NULL,
    remote TEXT,
    detail TEXT
);
CREATE INDEX cloud_audit_by_time ON cloud_audit(at);
ALTER TABLE api_tokens ADD COLUMN user_id TEXT REFERENCES users(id);
ALTER TABLE api_tokens ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT '*';
ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;
ALTER TABLE api_tokens ADD COLUMN revoked_at INTEGER;
INSERT INTO users (id, name, role, created_at)
    SELECT 'admin', 'admin', 'admin', MIN(created_at) FROM api_tokens HAVING COUNT(*) > 0;
UPDATE api_tokens SET user_id = 'admin', name = 'init' WHERE user_id IS NULL;
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN project_id TEXT;
ALTER TABLE jobs ADD COLUMN query_index INTEGER;
ALTER TABLE jobs ADD COLUMN customer TEXT;
UPDATE jobs SET body = NULL;
CREATE INDEX jobs_by_project ON jobs(project_id, query_index, customer, created_at);
CREATE INDEX jobs_by_end ON jobs(finished_at);
";

/// v6: single sign-on identities (issuer + subject) linked to users.
const SCHEMA_V6: &str = "
CREATE TABLE oidc_identities (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, subject)
);
";

/// v7: agent pools (an enrolment token names the pool, an agent belongs to it, a job may
/// be addressed to it; `agent` is then the member holding it, empty while none does).
const SCHEMA_V7: &str = "
ALTER TABLE enrol_tokens ADD COLUMN pool TEXT;
ALTER TABLE agents ADD COLUMN pool TEXT;
ALTER TABLE jobs ADD COLUMN pool TEXT;
CREATE INDEX jobs_by_pool_state ON jobs(pool, state, created_at) WHERE pool IS NOT NULL;
";

/// v8: the latest signed audit head per agent (`GET /v1/agents/{name}/audit-head`).
const SCHEMA_V8: &str = "
CREATE TABLE audit_heads (
    agent TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    head TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
";

/// v9: when an agent said it was stopping (cleared by its next request).
const SCHEMA_V9: &str = "ALTER TABLE agents ADD COLUMN stopped_at INTEGER;";

/// Every migration, in order: (the version it brings the database to, its SQL).
pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    (1, SCHEMA_V1),
    (2, SCHEMA_V2),
    (3, SCHEMA_V3),
    (4, SCHEMA_V4),
    (5, SCHEMA_V5),
    (6, SCHEMA_V6),
    (7, SCHEMA_V7),
    (8, SCHEMA_V8),
    (9, SCHEMA_V9),
];
