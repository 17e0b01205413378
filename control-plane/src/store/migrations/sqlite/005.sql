-- v5: access control (users, groups, shares, sessions, scoped API tokens, projects and
-- grants), the control plane's audit log, and who dispatched each job. Results are
-- sealed from now on: bodies stored in clear by earlier versions are dropped.
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
