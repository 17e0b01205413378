//! Persistence of access control: users, groups, connection shares, sessions, API tokens,
//! projects and their grants, and the control plane's own audit log.
//!
//! A second narrow trait beside [`crate::store::Store`], so a PostgreSQL backend can
//! implement both. Secrets are stored only as hashes (Argon2id for passwords, SHA-256 for
//! random tokens); every method is one transaction.

use std::future::Future;

use rusqlite::{params, Connection, OptionalExtension};

use crate::auth::access::{Grant, Role};
use crate::store::{SqliteStore, StoreError};

/// A user.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Stable id.
    pub id: String,
    /// Sign-in name (unique).
    pub name: String,
    /// Role.
    pub role: Role,
    /// Argon2id PHC string; `None` for a token-only user.
    pub password_hash: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// When disabled; a disabled user's sessions and tokens stop working.
    pub disabled_at: Option<i64>,
    /// Last successful sign-in.
    pub last_sign_in: Option<i64>,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("password_hash", &self.password_hash.as_ref().map(|_| "<redacted>"))
            .field("disabled_at", &self.disabled_at)
            .finish_non_exhaustive()
    }
}

/// A change to a user; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    /// New role.
    pub role: Option<Role>,
    /// Disable (true) or enable (false).
    pub disabled: Option<bool>,
    /// New password hash.
    pub password_hash: Option<String>,
}

/// A group with its members' names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// Name.
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Member user names, sorted.
    pub members: Vec<String>,
}

/// A connection shared with a user or a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRecord {
    /// Id.
    pub id: String,
    /// Agent name.
    pub agent: String,
    /// Connection name on that agent.
    pub connection: String,
    /// User name, when shared with a user.
    pub user: Option<String>,
    /// Group name, when shared with a group.
    pub group: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Name of the admin who shared it.
    pub created_by: String,
}

/// A sign-in session (only the SHA-256 of its id is stored).
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// SHA-256 (hex) of the cookie value.
    pub id_sha256: String,
    /// User id.
    pub user_id: String,
    /// CSRF token the console repeats in a header.
    pub csrf: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Last request, unix seconds.
    pub last_seen: i64,
    /// Absolute expiry, unix seconds.
    pub expires_at: i64,
}

/// An API token (only the SHA-256 of the secret is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    /// Id, shown in listings and the audit log.
    pub id: String,
    /// SHA-256 (hex) of the secret.
    pub token_sha256: String,
    /// Owner's user id.
    pub user_id: String,
    /// Owner's name (filled on reads).
    pub user: String,
    /// Label given at creation.
    pub name: String,
    /// Stored scopes (`*` or space-separated names).
    pub scopes: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None` only for tokens from before expiry existed.
    pub expires_at: Option<i64>,
    /// Last use, unix seconds (to the minute).
    pub last_used: Option<i64>,
    /// When revoked.
    pub revoked_at: Option<i64>,
}

impl ApiTokenRecord {
    /// `active`, `expired` or `revoked` at `now`.
    pub fn status(&self, now: i64) -> &'static str {
        match (self.revoked_at, self.expires_at) {
            (Some(_), _) => "revoked",
            (None, Some(e)) if e <= now => "expired",
            _ => "active",
        }
    }
}

/// A project: a saved set of queries with their render specs (JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRecord {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Owner's user id.
    pub owner_id: String,
    /// Owner's name (filled on reads).
    pub owner: String,
    /// The queries, JSON.
    pub queries_json: String,
    /// Embed tokens carry this number; revoking them bumps it.
    pub embed_epoch: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// One event of the control plane's audit log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEvent {
    /// Sequence number (0 before it is stored).
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// Who: a user name, `embed:<customer>` or `anonymous`.
    pub actor: String,
    /// With what: `session:<id>`, `token:<id>`, `embed:<jti>`, `password`, `cli` or `none`.
    pub credential: String,
    /// What: a stable action name such as `jobs.dispatch`.
    pub action: String,
    /// On what: a job, user, project, token … id or name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `ok`, `denied` or `failed`.
    pub outcome: String,
    /// HTTP status answered (0 for the CLI).
    pub status: u16,
    /// Client address, as seen by the listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Details, JSON (never secrets or SQL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// Which audit events to read.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Exact actor.
    pub actor: Option<String>,
    /// Action, or a prefix ending in `.` (e.g. `jobs.`).
    pub action: Option<String>,
    /// Exact outcome.
    pub outcome: Option<String>,
    /// Exact target.
    pub target: Option<String>,
    /// At or after, unix seconds.
    pub since: Option<i64>,
    /// Before, unix seconds.
    pub until: Option<i64>,
    /// Sequence numbers above this (paging).
    pub after: Option<i64>,
    /// At most this many (oldest first).
    pub limit: u32,
}

/// Persistence of access control; each method is one transaction.
pub trait AccessStore: Send + Sync + 'static {
    /// Adds a user; false when the name is taken.
    fn create_user(&self, u: UserRecord) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// A user by name.
    fn user_by_name(&self, name: String) -> impl Future<Output = Result<Option<UserRecord>, StoreError>> + Send;
    /// A user by id.
    fn user_by_id(&self, id: String) -> impl Future<Output = Result<Option<UserRecord>, StoreError>> + Send;
    /// The user a single sign-on identity (issuer, subject) is linked to.
    fn oidc_user(
        &self,
        issuer: String,
        subject: String,
    ) -> impl Future<Output = Result<Option<UserRecord>, StoreError>> + Send;
    /// Whether a user already has an identity of `issuer` linked.
    fn oidc_linked(&self, user_id: String, issuer: String) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Links a single sign-on identity to a user; false when it is already linked.
    fn link_oidc(
        &self,
        issuer: String,
        subject: String,
        user_id: String,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Every user, by name.
    fn users(&self) -> impl Future<Output = Result<Vec<UserRecord>, StoreError>> + Send;
    /// Changes a user; refuses (`Conflict`) to leave no enabled admin. Disabling ends the
    /// user's sessions. `None` for an unknown user.
    fn update_user(
        &self,
        name: String,
        update: UserUpdate,
        now: i64,
    ) -> impl Future<Output = Result<Option<UserRecord>, StoreError>> + Send;
    /// Records a successful sign-in.
    fn record_sign_in(&self, user_id: String, now: i64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds a group; false when the name is taken.
    fn create_group(&self, name: String, now: i64) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Deletes a group (its shares go with it); false when unknown.
    fn delete_group(&self, name: String) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Every group with its members.
    fn groups(&self) -> impl Future<Output = Result<Vec<GroupRecord>, StoreError>> + Send;
    /// Adds or removes a member; `Err(message)` names what does not exist.
    fn set_group_member(
        &self,
        group: String,
        user: String,
        member: bool,
    ) -> impl Future<Output = Result<Result<(), String>, StoreError>> + Send;

    /// Shares a connection; `Err(message)` for an unknown user or group or a duplicate.
    fn add_share(&self, s: ShareRecord) -> impl Future<Output = Result<Result<(), String>, StoreError>> + Send;
    /// Every share.
    fn shares(&self) -> impl Future<Output = Result<Vec<ShareRecord>, StoreError>> + Send;
    /// Removes a share; false when unknown.
    fn delete_share(&self, id: String) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The (agent, connection) pairs shared with the user directly or through a group.
    fn shared_connections(
        &self,
        user_id: String,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;

    /// Stores a session.
    fn create_session(&self, s: SessionRecord) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The live session with this hash and its enabled user; an expired or idle one is
    /// deleted and not returned. Records the use.
    fn session(
        &self,
        id_sha256: String,
        now: i64,
        idle_secs: i64,
    ) -> impl Future<Output = Result<Option<(SessionRecord, UserRecord)>, StoreError>> + Send;
    /// Ends a session.
    fn delete_session(&self, id_sha256: String) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores an API token.
    fn add_token(&self, t: ApiTokenRecord) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The live (unexpired, unrevoked) token with this hash and its enabled user; records
    /// the use (to the minute).
    fn token_auth(
        &self,
        token_sha256: String,
        now: i64,
    ) -> impl Future<Output = Result<Option<(ApiTokenRecord, UserRecord)>, StoreError>> + Send;
    /// Tokens of one user, or of everyone.
    fn tokens(&self, user_id: Option<String>) -> impl Future<Output = Result<Vec<ApiTokenRecord>, StoreError>> + Send;
    /// One token by id.
    fn token(&self, id: String) -> impl Future<Output = Result<Option<ApiTokenRecord>, StoreError>> + Send;
    /// Revokes a token; false when unknown or already revoked.
    fn revoke_token(&self, id: String, now: i64) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stores a project.
    fn create_project(&self, p: ProjectRecord) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// One project.
    fn project(&self, id: String) -> impl Future<Output = Result<Option<ProjectRecord>, StoreError>> + Send;
    /// Projects owned by or granted to `user_id` with the grant, or every project (`None`).
    fn projects_for(
        &self,
        user_id: Option<String>,
    ) -> impl Future<Output = Result<Vec<(ProjectRecord, Option<Grant>)>, StoreError>> + Send;
    /// The grant of a user on a project.
    fn project_grant(
        &self,
        project_id: String,
        user_id: String,
    ) -> impl Future<Output = Result<Option<Grant>, StoreError>> + Send;
    /// Grants on a project: (user name, grant).
    fn project_grants(
        &self,
        project_id: String,
    ) -> impl Future<Output = Result<Vec<(String, Grant)>, StoreError>> + Send;
    /// Replaces a project's name and queries; false when unknown.
    fn update_project(
        &self,
        id: String,
        name: String,
        queries_json: String,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Deletes a project and its grants; false when unknown.
    fn delete_project(&self, id: String) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Sets (`Some`) or removes (`None`) a user's grant; `Err(message)` for an unknown user.
    fn set_project_grant(
        &self,
        project_id: String,
        user: String,
        grant: Option<Grant>,
    ) -> impl Future<Output = Result<Result<(), String>, StoreError>> + Send;
    /// Invalidates every embed token of a project; returns the new epoch.
    fn bump_embed_epoch(&self, project_id: String) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;
    /// The newest job of one project query for one customer (or for none).
    fn latest_project_job(
        &self,
        project_id: String,
        query_index: i64,
        customer: Option<String>,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Appends an audit event.
    fn add_audit(&self, e: AuditEvent) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Reads audit events, oldest first.
    fn audit(&self, f: AuditFilter) -> impl Future<Output = Result<Vec<AuditEvent>, StoreError>> + Send;

    /// Deletes jobs (and their results) that ended before `before`, and sessions past
    /// expiry (SQLite zeroes the freed pages; PostgreSQL leaves dead rows until vacuum reuses
    /// them, and result bodies are sealed either way). Returns how many jobs went.
    fn purge(&self, before: i64, now: i64) -> impl Future<Output = Result<usize, StoreError>> + Send;
}

/// `text` for a LIKE pattern with `ESCAPE '\'`: its `%`, `_` and `\` match only
/// themselves. Every LIKE in the stores takes its user-given part through this.
pub(crate) fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for ch in text.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

const USER_COLS: &str = "id, name, role, password_hash, created_at, disabled_at, last_sign_in";

fn user_from_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<UserRecord> {
    let role: String = r.get(at + 2)?;
    Ok(UserRecord {
        id: r.get(at)?,
        name: r.get(at + 1)?,
        role: Role::parse(&role).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(at + 2, rusqlite::types::Type::Text, "unknown role".into())
        })?,
        password_hash: r.get(at + 3)?,
        created_at: r.get(at + 4)?,
        disabled_at: r.get(at + 5)?,
        last_sign_in: r.get(at + 6)?,
    })
}

const TOKEN_COLS: &str =
    "t.id, t.token_sha256, t.user_id, u.name, t.name, t.scopes, t.created_at, t.expires_at, t.last_used, t.revoked_at";

fn token_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiTokenRecord> {
    Ok(ApiTokenRecord {
        id: r.get(0)?,
        token_sha256: r.get(1)?,
        user_id: r.get(2)?,
        user: r.get(3)?,
        name: r.get(4)?,
        scopes: r.get(5)?,
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
        last_used: r.get(8)?,
        revoked_at: r.get(9)?,
    })
}

const PROJECT_COLS: &str = "p.id, p.name, p.owner, u.name, p.queries, p.embed_epoch, p.created_at, p.updated_at";

fn project_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProjectRecord> {
    Ok(ProjectRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        owner_id: r.get(2)?,
        owner: r.get(3)?,
        queries_json: r.get(4)?,
        embed_epoch: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

fn grant_of(s: &str) -> rusqlite::Result<Grant> {
    Grant::parse(s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, "unknown grant".into())
    })
}

fn user_id_by_name(c: &Connection, name: &str) -> Result<Option<String>, StoreError> {
    Ok(c.prepare_cached("SELECT id FROM users WHERE name = ?1")?.query_row(params![name], |r| r.get(0)).optional()?)
}

fn enabled_admins(c: &Connection) -> Result<i64, StoreError> {
    Ok(c.query_row("SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL", [], |r| r.get(0))?)
}

impl AccessStore for SqliteStore {
    async fn create_user(&self, u: UserRecord) -> Result<bool, StoreError> {
        self.with_conn(move |c| {
            let n = c.execute(
                "INSERT INTO users (id, name, role, password_hash, created_at, disabled_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(name) DO NOTHING",
                params![u.id, u.name, u.role.as_str(), u.password_hash, u.created_at, u.disabled_at],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn user_by_name(&self, name: String) -> Result<Option<UserRecord>, StoreError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE name = ?1"))?
                .query_row(params![name], |r| user_from_row(r, 0))
                .optional()?)
        })
        .await
    }

    async fn oidc_user(&self, issuer: String, subject: String) -> Result<Option<UserRecord>, StoreError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {} FROM users u JOIN oidc_identities o ON o.user_id = u.id WHERE o.issuer = ?1 AND o.subject = ?2",
                USER_COLS.split(", ").map(|col| format!("u.{}", col.trim())).collect::<Vec<_>>().join(", ")
            ))?
            .query_row(params![issuer, subject], |r| user_from_row(r, 0))
            .optional()?)
        })
        .await
    }

    async fn oidc_linked(&self, user_id: String, issuer: String) -> Result<bool, StoreError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached("SELECT 1 FROM oidc_identities WHERE user_id = ?1 AND issuer = ?2")?
                .query_row(params![user_id, issuer], |_| Ok(()))
                .optional()?
                .is_some())
        })
        .await
    }

    async fn link_oidc(&self, issuer: String, subject: String, user_id: String, now: i64) -> Result<bool, StoreError> {
        self.with_conn(move |c| {
            let n = c.execute(
                "INSERT INTO oidc_identities (issuer, subject, user_id, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(issuer, subject) DO NOTHING",
                params![issuer, subject, user_id, now],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn user_by_id(&self, id: String) -> Result<Option<UserRecord>, StoreError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE id = ?1"))?
                .query_row(params![id], |r| user_from_row(r, 0))
                .optional()?)
        })
        .await
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(&format!("SELECT {USER_COLS} FROM users ORDER BY name"))?;
            let rows = stmt.query_map([], |r| user_from_row(r, 0))?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn update_user(&self, name: String, update: UserUpdate, now: i64) -> Result<Option<UserRecord>, StoreError> {
        self.with_conn(move |c| {
            let tx = c.savepoint()?;
            let Some(id) = user_id_by_name(&tx, &name)? else {
                return Ok(None);
            };
            if let Some(role) = update.role {
                tx.execute("UPDATE users SET role = ?2 WHERE id = ?1", params![id, role.as_str()])?;
            }
            match update.disabled {
                Some(true) => {
                    tx.execute(
                        "UPDATE users SET disabled_at = COALESCE(disabled_at, ?2) WHERE id = ?1",
                        params![id, now],
                    )?;
                    tx.execute("DELETE FROM sessions WHERE user_id = ?1", params![id])?;
                }
                Some(false) => {
                    tx.execute("UPDATE users SET disabled_at = NULL WHERE id = ?1", params![id])?;
                }
                None => {}
            }
            if let Some(hash) = update.password_hash {
                tx.execute("UPDATE users SET password_hash = ?2 WHERE id = ?1", params![id, hash])?;
                // A new password ends the sessions signed in with the old one.
                tx.execute("DELETE FROM sessions WHERE user_id = ?1", params![id])?;
            }
            if enabled_admins(&tx)? == 0 {
                return Err(StoreError::Conflict(
                    "this change would leave no enabled admin; make another user admin first".into(),
                ));
            }
            let u = tx
                .prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE id = ?1"))?
                .query_row(params![id], |r| user_from_row(r, 0))?;
            tx.commit()?;
            Ok(Some(u))
        })
        .await
    }

    async fn record_sign_in(&self, user_id: String, now: i64) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.execute("UPDATE users SET last_sign_in = ?2 WHERE id = ?1", params![user_id, now])?;
            Ok(())
        })
        .await
    }

    async fn create_group(&self, name: String, now: i64) -> Result<bool, StoreError> {
        self.with_conn(move |c| {
            Ok(c.execute(
                "INSERT INTO groups (name, created_at) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
                params![name, now],
            )? == 1)
        })
        .await
    }

    async fn delete_group(&self, name: String) -> Result<bool, StoreError> {
        self.with_conn(move |c| Ok(c.execute("DELETE FROM groups WHERE name = ?1", params![name])? == 1)).await
    }

    async fn groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        self.with_conn(|c| {
            let mut groups: Vec<GroupRecord> = c
                .prepare_cached("SELECT name, created_at FROM groups ORDER BY name")?
                .query_map([], |r| Ok(GroupRecord { name: r.get(0)?, created_at: r.get(1)?, members: Vec::new() }))?
                .collect::<Result<_, _>>()?;
            let mut stmt = c.prepare_cached(
                "SELECT m.group_name, u.name FROM group_members m JOIN users u ON u.id = m.user_id ORDER BY u.name",
            )?;
            for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
                let (g, u) = row?;
                if let Some(group) = groups.iter_mut().find(|x| x.name == g) {
                    group.members.push(u);
                }
            }
            Ok(groups)
        })
        .await
    }

    async fn set_group_member(
        &self,
        group: String,
        user: String,
        member: bool,
    ) -> Result<Result<(), String>, StoreError> {
        self.with_conn(move |c| {
            let tx = c.savepoint()?;
            let exists: Option<i64> =
                tx.query_row("SELECT 1 FROM groups WHERE name = ?1", params![group], |r| r.get(0)).optional()?;
            if exists.is_none() {
                return Ok(Err(format!("no group {group:?}")));
            }
            let Some(uid) = user_id_by_name(&tx, &user)? else {
                return Ok(Err(format!("no user {user:?}")));
            };
            if member {
                tx.execute(
                    "INSERT INTO group_members (group_name, user_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    params![group, uid],
                )?;
            } else {
                tx.execute("DELETE FROM group_members WHERE group_name = ?1 AND user_id = ?2", params![group, uid])?;
            }
            tx.commit()?;
            Ok(Ok(()))
        })
        .await
    }

    async fn add_share(&self, s: ShareRecord) -> Result<Result<(), String>, StoreError> {
        self.with_conn(move |c| {
            let tx = c.savepoint()?;
            let user_id = match &s.user {
                Some(u) => match user_id_by_name(&tx, u)? {
                    Some(id) => Some(id),
                    None => return Ok(Err(format!("no user {u:?}"))),
                },
                None => None,
            };
            if let Some(g) = &s.group {
                let exists: Option<i64> =
                    tx.query_row("SELECT 1 FROM groups WHERE name = ?1", params![g], |r| r.get(0)).optional()?;
                if exists.is_none() {
                    return Ok(Err(format!("no group {g:?}")));
                }
            }
            let n = tx.execute(
                "INSERT INTO shares (id, agent, connection, user_id, group_name, created_at, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                params![s.id, s.agent, s.connection, user_id, s.group, s.created_at, s.created_by],
            )?;
            if n == 0 {
                return Ok(Err("this connection is already shared with them".into()));
            }
            tx.commit()?;
            Ok(Ok(()))
        })
        .await
    }

    async fn shares(&self) -> Result<Vec<ShareRecord>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT s.id, s.agent, s.connection, u.name, s.group_name, s.created_at, s.created_by
                 FROM shares s LEFT JOIN users u ON u.id = s.user_id ORDER BY s.agent, s.connection, s.created_at",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(ShareRecord {
                        id: r.get(0)?,
                        agent: r.get(1)?,
                        connection: r.get(2)?,
                        user: r.get(3)?,
                        group: r.get(4)?,
                        created_at: r.get(5)?,
                        created_by: r.get(6)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn delete_share(&self, id: String) -> Result<bool, StoreError> {
        self.with_conn(move |c| Ok(c.execute("DELETE FROM shares WHERE id = ?1", params![id])? == 1)).await
    }

    async fn shared_connections(&self, user_id: String) -> Result<Vec<(String, String)>, StoreError> {
        self.with_conn(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT DISTINCT agent, connection FROM shares
                 WHERE user_id = ?1 OR group_name IN (SELECT group_name FROM group_members WHERE user_id = ?1)
                 ORDER BY agent, connection",
            )?;
            let rows = stmt.query_map(params![user_id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn create_session(&self, s: SessionRecord) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO sessions (id_sha256, user_id, csrf, created_at, last_seen, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![s.id_sha256, s.user_id, s.csrf, s.created_at, s.last_seen, s.expires_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn session(
        &self,
        id_sha256: String,
        now: i64,
        idle_secs: i64,
    ) -> Result<Option<(SessionRecord, UserRecord)>, StoreError> {
        self.with_conn(move |c| {
            let row = c
                .prepare_cached(&format!(
                    "SELECT s.id_sha256, s.user_id, s.csrf, s.created_at, s.last_seen, s.expires_at, {}
                     FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_sha256 = ?1",
                    USER_COLS.split(", ").map(|c| format!("u.{c}")).collect::<Vec<_>>().join(", ")
                ))?
                .query_row(params![id_sha256], |r| {
                    Ok((
                        SessionRecord {
                            id_sha256: r.get(0)?,
                            user_id: r.get(1)?,
                            csrf: r.get(2)?,
                            created_at: r.get(3)?,
                            last_seen: r.get(4)?,
                            expires_at: r.get(5)?,
                        },
                        user_from_row(r, 6)?,
                    ))
                })
                .optional()?;
            let Some((s, u)) = row else { return Ok(None) };
            if s.expires_at <= now || s.last_seen + idle_secs <= now || u.disabled_at.is_some() {
                c.execute("DELETE FROM sessions WHERE id_sha256 = ?1", params![id_sha256])?;
                return Ok(None);
            }
            c.prepare_cached("UPDATE sessions SET last_seen = ?2 WHERE id_sha256 = ?1 AND last_seen < ?2")?
                .execute(params![id_sha256, now])?;
            Ok(Some((s, u)))
        })
        .await
    }

    async fn delete_session(&self, id_sha256: String) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.execute("DELETE FROM sessions WHERE id_sha256 = ?1", params![id_sha256])?;
            Ok(())
        })
        .await
    }

    async fn add_token(&self, t: ApiTokenRecord) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO api_tokens (id, token_sha256, role, user_id, name, scopes, created_at, expires_at)
                 SELECT ?1, ?2, role, ?3, ?4, ?5, ?6, ?7 FROM users WHERE id = ?3",
                params![t.id, t.token_sha256, t.user_id, t.name, t.scopes, t.created_at, t.expires_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn token_auth(
        &self,
        token_sha256: String,
        now: i64,
    ) -> Result<Option<(ApiTokenRecord, UserRecord)>, StoreError> {
        let hash = token_sha256.clone();
        let row = self
            .with_read(move |c| {
                Ok(c.prepare_cached(&format!(
                    "SELECT {TOKEN_COLS}, {} FROM api_tokens t JOIN users u ON u.id = t.user_id
                     WHERE t.token_sha256 = ?1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > ?2)
                       AND u.disabled_at IS NULL",
                    USER_COLS.split(", ").map(|c| format!("u.{c}")).collect::<Vec<_>>().join(", ")
                ))?
                .query_row(params![hash, now], |r| Ok((token_from_row(r)?, user_from_row(r, 10)?)))
                .optional()?)
            })
            .await?;
        // Coarse (per minute) so that every API call is not a write.
        if row.as_ref().is_some_and(|(t, _)| t.last_used.is_none_or(|at| at < now - 60)) {
            self.with_conn(move |c| {
                c.prepare_cached(
                    "UPDATE api_tokens SET last_used = ?2 WHERE token_sha256 = ?1 AND (last_used IS NULL OR last_used < ?2 - 60)",
                )?
                .execute(params![token_sha256, now])?;
                Ok(())
            })
            .await?;
        }
        Ok(row)
    }

    async fn tokens(&self, user_id: Option<String>) -> Result<Vec<ApiTokenRecord>, StoreError> {
        self.with_conn(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {TOKEN_COLS} FROM api_tokens t JOIN users u ON u.id = t.user_id
                 WHERE ?1 IS NULL OR t.user_id = ?1 ORDER BY t.created_at, t.id"
            ))?;
            let rows = stmt.query_map(params![user_id], token_from_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn token(&self, id: String) -> Result<Option<ApiTokenRecord>, StoreError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {TOKEN_COLS} FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = ?1"
            ))?
            .query_row(params![id], token_from_row)
            .optional()?)
        })
        .await
    }

    async fn revoke_token(&self, id: String, now: i64) -> Result<bool, StoreError> {
        self.with_conn(move |c| {
            Ok(c.execute(
                "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now],
            )? == 1)
        })
        .await
    }

    async fn create_project(&self, p: ProjectRecord) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO projects (id, name, owner, queries, embed_epoch, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![p.id, p.name, p.owner_id, p.queries_json, p.embed_epoch, p.created_at, p.updated_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn project(&self, id: String) -> Result<Option<ProjectRecord>, StoreError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {PROJECT_COLS} FROM projects p JOIN users u ON u.id = p.owner WHERE p.id = ?1"
            ))?
            .query_row(params![id], project_from_row)
            .optional()?)
        })
        .await
    }

    async fn projects_for(&self, user_id: Option<String>) -> Result<Vec<(ProjectRecord, Option<Grant>)>, StoreError> {
        self.with_conn(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {PROJECT_COLS}, g.access FROM projects p JOIN users u ON u.id = p.owner
                 LEFT JOIN project_grants g ON g.project_id = p.id AND g.user_id = ?1
                 WHERE ?1 IS NULL OR p.owner = ?1 OR g.user_id IS NOT NULL ORDER BY p.name, p.id"
            ))?;
            let rows = stmt
                .query_map(params![user_id], |r| {
                    let g: Option<String> = r.get(8)?;
                    Ok((project_from_row(r)?, g.as_deref().map(grant_of).transpose()?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn project_grant(&self, project_id: String, user_id: String) -> Result<Option<Grant>, StoreError> {
        self.with_conn(move |c| {
            let g: Option<String> = c
                .prepare_cached("SELECT access FROM project_grants WHERE project_id = ?1 AND user_id = ?2")?
                .query_row(params![project_id, user_id], |r| r.get(0))
                .optional()?;
            Ok(g.as_deref().map(grant_of).transpose()?)
        })
        .await
    }

    async fn project_grants(&self, project_id: String) -> Result<Vec<(String, Grant)>, StoreError> {
        self.with_conn(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT u.name, g.access FROM project_grants g JOIN users u ON u.id = g.user_id
                 WHERE g.project_id = ?1 ORDER BY u.name",
            )?;
            let rows = stmt
                .query_map(params![project_id], |r| Ok((r.get(0)?, grant_of(&r.get::<_, String>(1)?)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn update_project(
        &self,
        id: String,
        name: String,
        queries_json: String,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.with_conn(move |c| {
            Ok(c.execute(
                "UPDATE projects SET name = ?2, queries = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, name, queries_json, now],
            )? == 1)
        })
        .await
    }

    async fn delete_project(&self, id: String) -> Result<bool, StoreError> {
        self.with_conn(move |c| Ok(c.execute("DELETE FROM projects WHERE id = ?1", params![id])? == 1)).await
    }

    async fn set_project_grant(
        &self,
        project_id: String,
        user: String,
        grant: Option<Grant>,
    ) -> Result<Result<(), String>, StoreError> {
        self.with_conn(move |c| {
            let tx = c.savepoint()?;
            let Some(uid) = user_id_by_name(&tx, &user)? else {
                return Ok(Err(format!("no user {user:?}")));
            };
            match grant {
                Some(g) => tx.execute(
                    "INSERT INTO project_grants (project_id, user_id, access) VALUES (?1, ?2, ?3)
                     ON CONFLICT(project_id, user_id) DO UPDATE SET access = excluded.access",
                    params![project_id, uid, g.as_str()],
                )?,
                None => tx.execute(
                    "DELETE FROM project_grants WHERE project_id = ?1 AND user_id = ?2",
                    params![project_id, uid],
                )?,
            };
            tx.commit()?;
            Ok(Ok(()))
        })
        .await
    }

    async fn bump_embed_epoch(&self, project_id: String) -> Result<Option<i64>, StoreError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached(
                "UPDATE projects SET embed_epoch = embed_epoch + 1 WHERE id = ?1 RETURNING embed_epoch",
            )?
            .query_row(params![project_id], |r| r.get(0))
            .optional()?)
        })
        .await
    }

    async fn latest_project_job(
        &self,
        project_id: String,
        query_index: i64,
        customer: Option<String>,
    ) -> Result<Option<String>, StoreError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached(
                "SELECT id FROM jobs WHERE project_id = ?1 AND query_index = ?2 AND customer IS ?3
                 ORDER BY created_at DESC, rowid DESC LIMIT 1",
            )?
            .query_row(params![project_id, query_index, customer], |r| r.get(0))
            .optional()?)
        })
        .await
    }

    async fn add_audit(&self, e: AuditEvent) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.prepare_cached(
                "INSERT INTO cloud_audit (at, actor, credential, action, target, outcome, status, remote, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                e.at,
                e.actor,
                e.credential,
                e.action,
                e.target,
                e.outcome,
                e.status,
                e.remote,
                e.detail.map(|d| d.to_string())
            ])?;
            Ok(())
        })
        .await
    }

    async fn audit(&self, f: AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        self.with_conn(move |c| {
            let (action_exact, action_prefix) = match &f.action {
                Some(a) if a.ends_with('.') => (None, Some(format!("{}%", like_escape(a)))),
                Some(a) => (Some(a.clone()), None),
                None => (None, None),
            };
            let mut stmt = c.prepare_cached(
                "SELECT seq, at, actor, credential, action, target, outcome, status, remote, detail FROM cloud_audit
                 WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR action = ?2) AND (?3 IS NULL OR action LIKE ?3 ESCAPE '\\')
                   AND (?4 IS NULL OR outcome = ?4) AND (?5 IS NULL OR at >= ?5) AND (?6 IS NULL OR at < ?6)
                   AND (?7 IS NULL OR seq > ?7) AND (?8 IS NULL OR target = ?8)
                 ORDER BY seq LIMIT ?9",
            )?;
            let rows = stmt
                .query_map(
                    params![
                        f.actor,
                        action_exact,
                        action_prefix,
                        f.outcome,
                        f.since,
                        f.until,
                        f.after,
                        f.target,
                        f.limit
                    ],
                    |r| {
                        let detail: Option<String> = r.get(9)?;
                        Ok(AuditEvent {
                            seq: r.get(0)?,
                            at: r.get(1)?,
                            actor: r.get(2)?,
                            credential: r.get(3)?,
                            action: r.get(4)?,
                            target: r.get(5)?,
                            outcome: r.get(6)?,
                            status: r.get(7)?,
                            remote: r.get(8)?,
                            detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
                        })
                    },
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn purge(&self, before: i64, now: i64) -> Result<usize, StoreError> {
        let n = self
            .with_conn(move |c| {
                let n = c.execute(
                    "DELETE FROM jobs WHERE (finished_at IS NOT NULL AND finished_at < ?1)
                        OR (finished_at IS NULL AND expires_at < ?1)",
                    params![before],
                )?;
                c.execute("DELETE FROM sessions WHERE expires_at <= ?1", params![now])?;
                Ok(n)
            })
            .await?;
        if n > 0 {
            // secure_delete zeroed the freed pages in the WAL; copy them into the
            // database file and empty the WAL, so the old bytes are nowhere on disk.
            self.checkpoint_alone().await?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    //! Every scenario runs on both backends (SQLite and PostgreSQL), so they are held to
    //! the same behaviour.

    use std::future::Future;
    use std::sync::Arc;

    use super::*;
    use crate::store::access::AuditFilter;
    use crate::store::postgres::testdb::TestDb;
    use crate::store::postgres::PgStore;
    use crate::store::{JobOrigin, KeySetChange, NewJob, SigningKeyRecord, SqliteStore, Store};

    fn user(id: &str, name: &str, role: Role) -> UserRecord {
        UserRecord {
            id: id.into(),
            name: name.into(),
            role,
            password_hash: None,
            created_at: 1,
            disabled_at: None,
            last_sign_in: None,
        }
    }

    fn session(h: &str, uid: &str, expires_at: i64) -> SessionRecord {
        SessionRecord {
            id_sha256: h.into(),
            user_id: uid.into(),
            csrf: "c".into(),
            created_at: 100,
            last_seen: 100,
            expires_at,
        }
    }

    fn disable() -> UserUpdate {
        UserUpdate { disabled: Some(true), ..Default::default() }
    }

    async fn on_sqlite<F, Fut>(scenario: F)
    where
        F: FnOnce(Arc<SqliteStore>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let dir = tempfile::tempdir().expect("dir");
        let s = SqliteStore::open(&dir.path().join("cp.db")).expect("open");
        scenario(Arc::new(s)).await;
    }

    /// Runs the scenario on a fresh database, which is dropped even when it fails.
    async fn on_pg<F, Fut>(scenario: F)
    where
        F: FnOnce(Arc<PgStore>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let db = TestDb::new().await;
        let result = tokio::spawn(scenario(Arc::new(db.store.clone()))).await;
        db.drop().await;
        if let Err(e) = result {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    /// One test per backend for a scenario `async fn name<S: AccessStore + Store>(s: Arc<S>)`.
    macro_rules! on_both {
        ($($name:ident),* $(,)?) => {$(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::on_sqlite(super::$name).await;
                }
                #[tokio::test]
                async fn postgres() {
                    super::on_pg(super::$name).await;
                }
            }
        )*};
    }

    on_both!(
        last_admin,
        last_admin_under_concurrent_changes,
        users_and_passwords,
        shares_and_groups,
        sessions,
        api_tokens,
        projects_and_grants,
        oidc,
        audit_log,
        purge,
    );

    async fn last_admin<S: AccessStore>(s: Arc<S>) {
        assert!(s.create_user(user("u1", "root", Role::Admin)).await.expect("add"));
        assert!(!s.create_user(user("u9", "root", Role::Viewer)).await.expect("dup"));
        let e = s.update_user("root".into(), disable(), 5).await;
        assert!(matches!(e, Err(StoreError::Conflict(_))), "{e:?}");
        let e = s.update_user("root".into(), UserUpdate { role: Some(Role::Editor), ..Default::default() }, 5).await;
        assert!(matches!(e, Err(StoreError::Conflict(_))), "{e:?}");
        let root = s.user_by_name("root".into()).await.expect("get").expect("there");
        assert_eq!((root.role, root.disabled_at), (Role::Admin, None), "the refused change was rolled back");
        assert!(s.create_user(user("u2", "second", Role::Admin)).await.expect("add"));
        let u = s.update_user("root".into(), disable(), 5).await.expect("ok").expect("found");
        assert_eq!(u.disabled_at, Some(5));
        // Disabling again keeps the first time; enabling clears it.
        let u = s.update_user("root".into(), disable(), 9).await.expect("ok").expect("found");
        assert_eq!(u.disabled_at, Some(5));
        let e = s.update_user("second".into(), disable(), 6).await;
        assert!(matches!(e, Err(StoreError::Conflict(_))), "{e:?}");
        let u = s
            .update_user("root".into(), UserUpdate { disabled: Some(false), ..Default::default() }, 7)
            .await
            .expect("ok")
            .expect("found");
        assert_eq!(u.disabled_at, None);
        assert!(s.update_user("nobody".into(), disable(), 5).await.expect("ok").is_none());
    }

    async fn last_admin_under_concurrent_changes<S: AccessStore>(s: Arc<S>) {
        // Each round starts with exactly two enabled admins, a and b; disabling one and
        // demoting the other at once must leave one.
        let mut survivor: Option<String> = None;
        for round in 0..10 {
            let (a, b) = (format!("a{round}"), format!("b{round}"));
            s.create_user(user(&a, &a, Role::Admin)).await.expect("add");
            s.create_user(user(&b, &b, Role::Admin)).await.expect("add");
            if let Some(prev) = survivor.take() {
                s.update_user(prev, disable(), 5).await.expect("ok").expect("found");
            }
            let demote = UserUpdate { role: Some(Role::Viewer), ..Default::default() };
            let (ra, rb) = tokio::join!(s.update_user(a.clone(), disable(), 5), s.update_user(b.clone(), demote, 5));
            let refused = [&ra, &rb].iter().filter(|r| matches!(r, Err(StoreError::Conflict(_)))).count();
            assert_eq!(refused, 1, "round {round}: exactly one of two changes goes through: {ra:?} {rb:?}");
            assert!(ra.is_ok() || rb.is_ok(), "round {round}: {ra:?} {rb:?}");
            let admins: Vec<_> = s
                .users()
                .await
                .expect("users")
                .into_iter()
                .filter(|u| u.role == Role::Admin && u.disabled_at.is_none())
                .map(|u| u.name)
                .collect();
            let expected = if ra.is_ok() { &b } else { &a };
            assert_eq!(admins, std::slice::from_ref(expected), "round {round}");
            survivor = Some(expected.clone());
        }
    }

    async fn users_and_passwords<S: AccessStore>(s: Arc<S>) {
        assert!(s.create_user(user("u1", "root", Role::Admin)).await.expect("add"));
        let mut ed = user("u2", "ed", Role::Editor);
        ed.password_hash = Some("$argon2id$old".into());
        assert!(s.create_user(ed).await.expect("add"));
        assert!(s.create_user(user("u3", "Zed", Role::Viewer)).await.expect("add"));
        let names: Vec<_> = s.users().await.expect("users").into_iter().map(|u| u.name).collect();
        assert_eq!(names, ["Zed", "ed", "root"], "byte order, like SQLite's BINARY");
        let got = s.user_by_id("u2".into()).await.expect("q").expect("there");
        assert_eq!(
            (got.name.as_str(), got.role, got.password_hash.as_deref()),
            ("ed", Role::Editor, Some("$argon2id$old"))
        );
        assert!(!format!("{got:?}").contains("argon2"), "Debug redacts the hash");
        assert!(s.user_by_id("nope".into()).await.expect("q").is_none());
        assert!(s.user_by_name("nope".into()).await.expect("q").is_none());

        s.record_sign_in("u2".into(), 77).await.expect("sign in");
        assert_eq!(s.user_by_name("ed".into()).await.expect("q").expect("there").last_sign_in, Some(77));

        // A new password ends the sessions; a role change does not.
        s.create_session(session("s1", "u2", 1000)).await.expect("session");
        let u = s
            .update_user("ed".into(), UserUpdate { role: Some(Role::Viewer), ..Default::default() }, 5)
            .await
            .expect("ok")
            .expect("found");
        assert_eq!((u.role, u.password_hash.as_deref()), (Role::Viewer, Some("$argon2id$old")));
        assert!(s.session("s1".into(), 101, 600).await.expect("q").is_some());
        let u = s
            .update_user(
                "ed".into(),
                UserUpdate { password_hash: Some("$argon2id$new".into()), ..Default::default() },
                5,
            )
            .await
            .expect("ok")
            .expect("found");
        assert_eq!((u.role, u.password_hash.as_deref()), (Role::Viewer, Some("$argon2id$new")));
        assert!(s.session("s1".into(), 102, 600).await.expect("q").is_none());
    }

    async fn shares_and_groups<S: AccessStore>(s: Arc<S>) {
        s.create_user(user("u1", "ed", Role::Editor)).await.expect("add");
        s.create_user(user("u2", "al", Role::Viewer)).await.expect("add");
        assert!(s.create_group("analysts".into(), 1).await.expect("group"));
        assert!(!s.create_group("analysts".into(), 2).await.expect("dup group"));
        let share = |id: &str, user: Option<&str>, group: Option<&str>| ShareRecord {
            id: id.into(),
            agent: "edge".into(),
            connection: "warehouse".into(),
            user: user.map(Into::into),
            group: group.map(Into::into),
            created_at: 1,
            created_by: "root".into(),
        };
        assert_eq!(s.add_share(share("s1", None, Some("analysts"))).await.expect("share"), Ok(()));
        assert_eq!(
            s.add_share(share("s2", None, Some("analysts"))).await.expect("dup"),
            Err("this connection is already shared with them".into())
        );
        assert_eq!(
            s.add_share(share("s3", Some("nobody"), None)).await.expect("unknown"),
            Err("no user \"nobody\"".into())
        );
        assert_eq!(
            s.add_share(share("s3", None, Some("nope"))).await.expect("unknown"),
            Err("no group \"nope\"".into())
        );
        assert!(s.shared_connections("u1".into()).await.expect("q").is_empty());
        s.set_group_member("analysts".into(), "ed".into(), true).await.expect("q").expect("member");
        s.set_group_member("analysts".into(), "ed".into(), true).await.expect("q").expect("member again");
        s.set_group_member("analysts".into(), "al".into(), true).await.expect("q").expect("member");
        assert_eq!(s.shared_connections("u1".into()).await.expect("q"), vec![("edge".into(), "warehouse".into())]);
        assert_eq!(
            s.set_group_member("nope".into(), "ed".into(), true).await.expect("q"),
            Err("no group \"nope\"".into())
        );
        assert_eq!(
            s.set_group_member("analysts".into(), "nobody".into(), true).await.expect("q"),
            Err("no user \"nobody\"".into())
        );
        assert!(s.create_group("Beta".into(), 3).await.expect("group"));
        let groups = s.groups().await.expect("groups");
        assert_eq!(
            groups,
            vec![
                GroupRecord { name: "Beta".into(), created_at: 3, members: vec![] },
                GroupRecord { name: "analysts".into(), created_at: 1, members: vec!["al".into(), "ed".into()] },
            ]
        );
        s.set_group_member("analysts".into(), "ed".into(), false).await.expect("q").expect("left");
        assert!(s.shared_connections("u1".into()).await.expect("q").is_empty());

        // Direct shares, the same pair through a user and a group counted once.
        assert_eq!(s.add_share(share("s4", Some("al"), None)).await.expect("share"), Ok(()));
        let mut other = share("s5", Some("al"), None);
        other.agent = "Core".into();
        assert_eq!(s.add_share(other).await.expect("share"), Ok(()));
        assert_eq!(
            s.shared_connections("u2".into()).await.expect("q"),
            vec![("Core".into(), "warehouse".into()), ("edge".into(), "warehouse".into())]
        );
        let listed: Vec<_> = s.shares().await.expect("shares").into_iter().map(|x| (x.id, x.user, x.group)).collect();
        assert_eq!(
            listed,
            vec![
                ("s5".into(), Some("al".into()), None),
                ("s1".into(), None, Some("analysts".into())),
                ("s4".into(), Some("al".into()), None),
            ]
        );
        assert!(s.delete_share("s4".into()).await.expect("delete"));
        assert!(!s.delete_share("s4".into()).await.expect("delete again"));
        // A group's shares and memberships go with it.
        assert!(s.delete_group("analysts".into()).await.expect("delete"));
        assert!(!s.delete_group("analysts".into()).await.expect("delete again"));
        assert_eq!(s.shared_connections("u2".into()).await.expect("q"), vec![("Core".into(), "warehouse".into())]);
        assert_eq!(s.shares().await.expect("shares").len(), 1);
    }

    async fn sessions<S: AccessStore>(s: Arc<S>) {
        s.create_user(user("u1", "root", Role::Admin)).await.expect("add");
        s.create_user(user("u2", "ed", Role::Editor)).await.expect("add");
        s.create_session(session("a", "u2", 1000)).await.expect("a");
        let (got, u) = s.session("a".into(), 150, 60).await.expect("q").expect("live");
        assert_eq!((got.user_id.as_str(), got.csrf.as_str(), got.last_seen, u.name.as_str()), ("u2", "c", 100, "ed"));
        // Used at 150: idle until 210.
        let (got, _) = s.session("a".into(), 205, 60).await.expect("q").expect("live");
        assert_eq!(got.last_seen, 150, "the record read, before this use");
        assert!(s.session("a".into(), 300, 60).await.expect("q").is_none(), "idle");
        assert!(s.session("a".into(), 301, 600).await.expect("q").is_none(), "deleted when found idle");
        s.create_session(session("b", "u2", 1000)).await.expect("b");
        assert!(s.session("b".into(), 1000, 10_000).await.expect("q").is_none(), "absolute expiry");
        s.create_session(session("c", "u2", 1000)).await.expect("c");
        s.update_user("ed".into(), disable(), 120).await.expect("d");
        assert!(s.session("c".into(), 121, 600).await.expect("q").is_none(), "disabled");
        s.create_session(session("d", "u1", 1000)).await.expect("d");
        assert!(s.session("d".into(), 101, 600).await.expect("q").is_some());
        s.delete_session("d".into()).await.expect("delete");
        assert!(s.session("d".into(), 102, 600).await.expect("q").is_none(), "ended");
        s.delete_session("d".into()).await.expect("delete again");
        assert!(s.session("never".into(), 102, 600).await.expect("q").is_none());
    }

    async fn api_tokens<S: AccessStore>(s: Arc<S>) {
        s.create_user(user("u1", "root", Role::Admin)).await.expect("add");
        s.create_user(user("u2", "ed", Role::Editor)).await.expect("add");
        let token = |id: &str, uid: &str, created_at: i64, expires_at: Option<i64>| ApiTokenRecord {
            id: id.into(),
            token_sha256: format!("hash-{id}"),
            user_id: uid.into(),
            user: String::new(),
            name: format!("label {id}"),
            scopes: "*".into(),
            created_at,
            expires_at,
            last_used: None,
            revoked_at: None,
        };
        s.add_token(token("t2", "u2", 10, Some(1000))).await.expect("add");
        s.add_token(token("t1", "u1", 10, None)).await.expect("add");
        s.add_token(token("t3", "u2", 5, Some(100))).await.expect("add");
        s.add_token(token("t9", "nobody", 5, None)).await.expect("an unknown user's token is not stored");
        assert!(s.token("t9".into()).await.expect("q").is_none());

        let (t, u) = s.token_auth("hash-t2".into(), 200).await.expect("q").expect("live");
        assert_eq!((t.id.as_str(), t.user.as_str(), t.last_used, u.name.as_str()), ("t2", "ed", None, "ed"));
        assert_eq!(s.token("t2".into()).await.expect("q").expect("there").last_used, Some(200));
        // Recorded to the minute.
        s.token_auth("hash-t2".into(), 250).await.expect("q").expect("live");
        assert_eq!(s.token("t2".into()).await.expect("q").expect("there").last_used, Some(200));
        s.token_auth("hash-t2".into(), 261).await.expect("q").expect("live");
        assert_eq!(s.token("t2".into()).await.expect("q").expect("there").last_used, Some(261));

        assert!(s.token_auth("hash-t3".into(), 100).await.expect("q").is_none(), "expired");
        assert!(s.token_auth("hash-t3".into(), 99).await.expect("q").is_some());
        assert!(s.token_auth("hash-t1".into(), 1 << 40).await.expect("q").is_some(), "no expiry");
        assert!(s.token_auth("hash-nope".into(), 1).await.expect("q").is_none());

        let all: Vec<_> = s.tokens(None).await.expect("q").into_iter().map(|t| t.id).collect();
        assert_eq!(all, ["t3", "t1", "t2"]);
        let mine: Vec<_> = s.tokens(Some("u2".into())).await.expect("q").into_iter().map(|t| t.id).collect();
        assert_eq!(mine, ["t3", "t2"]);

        assert!(s.revoke_token("t2".into(), 300).await.expect("revoke"));
        assert!(!s.revoke_token("t2".into(), 301).await.expect("again"));
        assert!(!s.revoke_token("nope".into(), 301).await.expect("unknown"));
        let t = s.token("t2".into()).await.expect("q").expect("there");
        assert_eq!((t.revoked_at, t.status(400)), (Some(300), "revoked"));
        assert!(s.token_auth("hash-t2".into(), 400).await.expect("q").is_none(), "revoked");

        s.update_user("ed".into(), disable(), 500).await.expect("ok").expect("found");
        assert!(s.token_auth("hash-t3".into(), 50).await.expect("q").is_none(), "user disabled");
    }

    async fn projects_and_grants<S: AccessStore + Store>(s: Arc<S>) {
        s.create_user(user("u1", "root", Role::Admin)).await.expect("add");
        s.create_user(user("u2", "ed", Role::Editor)).await.expect("add");
        s.create_user(user("u3", "vi", Role::Viewer)).await.expect("add");
        let project = |id: &str, name: &str, owner: &str| ProjectRecord {
            id: id.into(),
            name: name.into(),
            owner_id: owner.into(),
            owner: String::new(),
            queries_json: "[]".into(),
            embed_epoch: 0,
            created_at: 1,
            updated_at: 1,
        };
        s.create_project(project("p1", "sales", "u2")).await.expect("p1");
        s.create_project(project("p2", "Costs", "u1")).await.expect("p2");
        s.create_project(project("p3", "sales", "u1")).await.expect("p3");
        let got = s.project("p1".into()).await.expect("q").expect("there");
        assert_eq!((got.owner.as_str(), got.owner_id.as_str()), ("ed", "u2"));
        assert!(s.project("nope".into()).await.expect("q").is_none());

        let ids = |v: Vec<(ProjectRecord, Option<Grant>)>| v.into_iter().map(|(p, g)| (p.id, g)).collect::<Vec<_>>();
        assert_eq!(
            ids(s.projects_for(None).await.expect("q")),
            [("p2".into(), None), ("p1".into(), None), ("p3".into(), None)]
        );
        assert_eq!(ids(s.projects_for(Some("u2".into())).await.expect("q")), [("p1".into(), None)]);
        assert!(s.projects_for(Some("u3".into())).await.expect("q").is_empty());

        assert_eq!(s.set_project_grant("p3".into(), "vi".into(), Some(Grant::ViewApp)).await.expect("q"), Ok(()));
        assert_eq!(s.set_project_grant("p3".into(), "vi".into(), Some(Grant::ViewLogic)).await.expect("q"), Ok(()));
        assert_eq!(s.set_project_grant("p3".into(), "ed".into(), Some(Grant::Edit)).await.expect("q"), Ok(()));
        assert_eq!(
            s.set_project_grant("p3".into(), "nobody".into(), Some(Grant::Edit)).await.expect("q"),
            Err("no user \"nobody\"".into())
        );
        assert_eq!(s.project_grant("p3".into(), "u3".into()).await.expect("q"), Some(Grant::ViewLogic));
        assert_eq!(s.project_grant("p1".into(), "u3".into()).await.expect("q"), None);
        assert_eq!(
            s.project_grants("p3".into()).await.expect("q"),
            [("ed".into(), Grant::Edit), ("vi".into(), Grant::ViewLogic)]
        );
        assert_eq!(ids(s.projects_for(Some("u3".into())).await.expect("q")), [("p3".into(), Some(Grant::ViewLogic))]);
        assert_eq!(
            ids(s.projects_for(Some("u2".into())).await.expect("q")),
            [("p1".into(), None), ("p3".into(), Some(Grant::Edit))]
        );
        assert_eq!(s.set_project_grant("p3".into(), "ed".into(), None).await.expect("q"), Ok(()));
        assert_eq!(s.project_grant("p3".into(), "u2".into()).await.expect("q"), None);

        assert!(s.update_project("p1".into(), "Sales".into(), "[{\"sql\":\"x\"}]".into(), 9).await.expect("q"));
        assert!(!s.update_project("nope".into(), "x".into(), "[]".into(), 9).await.expect("q"));
        let got = s.project("p1".into()).await.expect("q").expect("there");
        assert_eq!((got.name.as_str(), got.queries_json.as_str(), got.updated_at), ("Sales", "[{\"sql\":\"x\"}]", 9));

        assert_eq!(s.bump_embed_epoch("p1".into()).await.expect("q"), Some(1));
        assert_eq!(s.bump_embed_epoch("p1".into()).await.expect("q"), Some(2));
        assert_eq!(s.bump_embed_epoch("nope".into()).await.expect("q"), None);
        assert_eq!(s.project("p1".into()).await.expect("q").expect("there").embed_epoch, 2);

        // Jobs of project queries: the newest per (query, customer), ties by insertion.
        add_signing_key(&*s).await;
        let origin = |customer: Option<&str>| JobOrigin {
            owner: Some("u2".into()),
            project_id: Some("p1".into()),
            query_index: Some(0),
            customer: customer.map(Into::into),
        };
        assert_eq!(s.latest_project_job("p1".into(), 0, None).await.expect("q"), None);
        s.insert_job(new_job("j1", 10, 1000, origin(None))).await.expect("j1");
        s.insert_job(new_job("j2", 20, 1000, origin(None))).await.expect("j2");
        s.insert_job(new_job("j3", 20, 1000, origin(None))).await.expect("j3");
        s.insert_job(new_job("j4", 30, 1000, origin(Some("acme")))).await.expect("j4");
        s.insert_job(new_job("j5", 5, 1000, origin(Some("acme")))).await.expect("j5");
        assert_eq!(s.latest_project_job("p1".into(), 0, None).await.expect("q"), Some("j3".into()));
        assert_eq!(s.latest_project_job("p1".into(), 0, Some("acme".into())).await.expect("q"), Some("j4".into()));
        assert_eq!(s.latest_project_job("p1".into(), 0, Some("other".into())).await.expect("q"), None);
        assert_eq!(s.latest_project_job("p1".into(), 1, None).await.expect("q"), None);

        // A project's grants go with it.
        assert!(s.delete_project("p3".into()).await.expect("q"));
        assert!(!s.delete_project("p3".into()).await.expect("q"));
        assert_eq!(s.project_grant("p3".into(), "u3".into()).await.expect("q"), None);
        assert!(s.projects_for(Some("u3".into())).await.expect("q").is_empty());
    }

    async fn add_signing_key<S: Store>(s: &S) {
        let key = SigningKeyRecord {
            key_id: "k1".into(),
            public_key: "AAAA".into(),
            status: "active".into(),
            created_at: 1,
            activated_at: Some(1),
            retired_at: None,
        };
        let change = KeySetChange {
            version: 1,
            statement_json: "{}".into(),
            keys: vec![key],
            resign: None,
            envelopes: None,
            now: 1,
        };
        s.commit_key_set(change).await.expect("key set");
    }

    fn new_job(id: &str, created_at: i64, expires_at: i64, origin: JobOrigin) -> NewJob {
        NewJob {
            id: id.into(),
            agent: "edge".into(),
            pool: None,
            connection: "warehouse".into(),
            envelope_json: "{}".into(),
            key_id: "k1".into(),
            created_at,
            expires_at,
            origin,
        }
    }

    async fn oidc<S: AccessStore>(s: Arc<S>) {
        s.create_user(user("u1", "root", Role::Admin)).await.expect("add");
        s.create_user(user("u2", "ed", Role::Editor)).await.expect("add");
        let iss = "https://idp.example";
        assert!(!s.oidc_linked("u2".into(), iss.into()).await.expect("q"));
        assert!(s.oidc_user(iss.into(), "sub-1".into()).await.expect("q").is_none());
        assert!(s.link_oidc(iss.into(), "sub-1".into(), "u2".into(), 5).await.expect("link"));
        assert!(!s.link_oidc(iss.into(), "sub-1".into(), "u1".into(), 6).await.expect("taken"));
        assert_eq!(s.oidc_user(iss.into(), "sub-1".into()).await.expect("q").expect("linked").name, "ed");
        assert!(s.oidc_user("https://other".into(), "sub-1".into()).await.expect("q").is_none());
        assert!(s.oidc_linked("u2".into(), iss.into()).await.expect("q"));
        assert!(!s.oidc_linked("u2".into(), "https://other".into()).await.expect("q"));
        assert!(!s.oidc_linked("u1".into(), iss.into()).await.expect("q"));
        // Two subjects of one issuer on one user.
        assert!(s.link_oidc(iss.into(), "sub-2".into(), "u2".into(), 7).await.expect("link"));
        assert!(s.oidc_linked("u2".into(), iss.into()).await.expect("q"));
    }

    async fn audit_log<S: AccessStore>(s: Arc<S>) {
        let event = |at: i64, actor: &str, action: &str, outcome: &str, target: Option<&str>| AuditEvent {
            seq: 0,
            at,
            actor: actor.into(),
            credential: "password".into(),
            action: action.into(),
            target: target.map(Into::into),
            outcome: outcome.into(),
            status: 200,
            remote: None,
            detail: None,
        };
        let mut first = event(10, "root", "jobs.dispatch", "ok", Some("j1"));
        first.status = 65535;
        first.remote = Some("192.0.2.1".into());
        first.detail = Some(serde_json::json!({"connection": "warehouse", "rows": 3}));
        s.add_audit(first.clone()).await.expect("add");
        s.add_audit(event(20, "ed", "jobs.cancel", "denied", Some("j1"))).await.expect("add");
        s.add_audit(event(30, "root", "users.create", "ok", Some("ed"))).await.expect("add");
        s.add_audit(event(40, "root", "jobsx", "failed", None)).await.expect("add");
        s.add_audit(event(50, "anonymous", "JOBS.dispatch", "denied", None)).await.expect("add");

        let all = s.audit(AuditFilter { limit: 100, ..Default::default() }).await.expect("q");
        assert_eq!(all.len(), 5);
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "oldest first");
        let stored = &all[0];
        assert_eq!(AuditEvent { seq: 0, ..stored.clone() }, first, "every field round-trips");
        assert_eq!(
            (all[1].target.as_deref(), all[3].target.as_deref(), all[3].remote.as_deref()),
            (Some("j1"), None, None)
        );

        let actions = |v: Vec<AuditEvent>| v.into_iter().map(|e| e.action).collect::<Vec<_>>();
        let q = |f: AuditFilter| {
            let s = Arc::clone(&s);
            async move { actions(s.audit(AuditFilter { limit: 100, ..f }).await.expect("q")) }
        };
        assert_eq!(
            q(AuditFilter { actor: Some("root".into()), ..Default::default() }).await,
            ["jobs.dispatch", "users.create", "jobsx"]
        );
        // A prefix ends in `.`; like SQLite's LIKE it ignores ASCII case.
        assert_eq!(
            q(AuditFilter { action: Some("jobs.".into()), ..Default::default() }).await,
            ["jobs.dispatch", "jobs.cancel", "JOBS.dispatch"]
        );
        assert_eq!(q(AuditFilter { action: Some("jobs".into()), ..Default::default() }).await, Vec::<String>::new());
        assert_eq!(q(AuditFilter { action: Some("jobs.cancel".into()), ..Default::default() }).await, ["jobs.cancel"]);
        assert_eq!(
            q(AuditFilter { outcome: Some("denied".into()), ..Default::default() }).await,
            ["jobs.cancel", "JOBS.dispatch"]
        );
        assert_eq!(
            q(AuditFilter { target: Some("j1".into()), ..Default::default() }).await,
            ["jobs.dispatch", "jobs.cancel"]
        );
        assert_eq!(
            q(AuditFilter { since: Some(20), until: Some(40), ..Default::default() }).await,
            ["jobs.cancel", "users.create"]
        );
        assert_eq!(
            q(AuditFilter {
                actor: Some("root".into()),
                action: Some("jobs.".into()),
                outcome: Some("ok".into()),
                ..Default::default()
            })
            .await,
            ["jobs.dispatch"]
        );

        // Paging: `after` the last seq of a page.
        let page = |after: Option<i64>| {
            let s = Arc::clone(&s);
            async move { s.audit(AuditFilter { after, limit: 2, ..Default::default() }).await.expect("q") }
        };
        let p1 = page(None).await;
        assert_eq!(p1.iter().map(|e| e.at).collect::<Vec<_>>(), [10, 20]);
        let p2 = page(p1.last().map(|e| e.seq)).await;
        assert_eq!(p2.iter().map(|e| e.at).collect::<Vec<_>>(), [30, 40]);
        let p3 = page(p2.last().map(|e| e.seq)).await;
        assert_eq!(p3.iter().map(|e| e.at).collect::<Vec<_>>(), [50]);
        assert!(page(p3.last().map(|e| e.seq)).await.is_empty());
        assert!(s.audit(AuditFilter { limit: 0, ..Default::default() }).await.expect("q").is_empty());

        // `%`, `_` and `\` in a prefix match only themselves, not any character.
        for (at, action) in [(60, "a_b.x"), (61, "axb.x"), (62, "a%b.x"), (63, "azzb.x"), (64, "a\\b.x")] {
            s.add_audit(event(at, "root", action, "ok", None)).await.expect("add");
        }
        assert_eq!(q(AuditFilter { action: Some("a_b.".into()), ..Default::default() }).await, ["a_b.x"]);
        assert_eq!(q(AuditFilter { action: Some("a%b.".into()), ..Default::default() }).await, ["a%b.x"]);
        assert_eq!(q(AuditFilter { action: Some("a\\b.".into()), ..Default::default() }).await, ["a\\b.x"]);
        assert_eq!(q(AuditFilter { action: Some("%.".into()), ..Default::default() }).await, Vec::<String>::new());
    }

    async fn purge<S: AccessStore + Store>(s: Arc<S>) {
        s.create_user(user("u1", "root", Role::Admin)).await.expect("add");
        add_signing_key(&*s).await;
        let none = JobOrigin::default;
        s.insert_job(new_job("ended-early", 10, 1000, none())).await.expect("job");
        s.insert_job(new_job("expired-unfinished", 10, 60, none())).await.expect("job");
        s.insert_job(new_job("ended-late", 10, 1000, none())).await.expect("job");
        s.insert_job(new_job("open", 10, 1000, none())).await.expect("job");
        s.cancel_job("ended-early".into(), 50).await.expect("cancel");
        s.cancel_job("ended-late".into(), 150).await.expect("cancel");
        s.create_session(session("gone", "u1", 500)).await.expect("session");
        s.create_session(session("kept", "u1", 501)).await.expect("session");

        assert_eq!(s.purge(100, 500).await.expect("purge"), 2);
        for (id, kept) in [("ended-early", false), ("expired-unfinished", false), ("ended-late", true), ("open", true)]
        {
            assert_eq!(s.job(id.into(), 500, false).await.expect("q").is_some(), kept, "{id}");
        }
        assert!(s.session("gone".into(), 400, 10_000).await.expect("q").is_none(), "expired session purged");
        assert!(s.session("kept".into(), 400, 10_000).await.expect("q").is_some());
        assert_eq!(s.purge(100, 500).await.expect("purge again"), 0);
    }

    /// A status out of `u16` range is a typed corruption, not a panic or a wrap.
    #[tokio::test]
    async fn an_out_of_range_audit_status_is_corrupt() {
        on_pg(|s| async move {
            let client = s.client().await.expect("client");
            client
                .execute(
                    "INSERT INTO cloud_audit (at, actor, credential, action, outcome, status)
                     VALUES (1, 'root', 'cli', 'x', 'ok', 70000)",
                    &[],
                )
                .await
                .expect("insert");
            let e = s.audit(AuditFilter { limit: 10, ..Default::default() }).await;
            assert!(matches!(e, Err(StoreError::Corrupt { table: "cloud_audit", .. })), "{e:?}");
        })
        .await;
    }
}
