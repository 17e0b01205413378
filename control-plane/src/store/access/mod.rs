//! Persistence of access control: users, groups, connection shares, sessions, API tokens,
//! projects and their grants, and the control plane's own audit log.
//!
//! A second narrow trait beside [`crate::store::Store`], so a PostgreSQL backend can
//! implement both. Secrets are stored only as hashes (Argon2id for passwords, SHA-256 for
//! random tokens); every method is one transaction.
//!
//! This file holds the trait and its records; the two implementations are in `sqlite/`
//! and `postgres/`, one file per topic (users and sharing, credentials, projects, the
//! audit log, retention), and `contract_tests/` holds each backend to the same behaviour.

use std::future::Future;

use crate::store::{AccessRefusal, StoreError};

mod roles;
pub use roles::{Grant, Role};

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
            .field("password_hash", &self.password_hash.as_ref().map(|_| "[REDACTED]"))
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
    /// The origins that may frame its embed page, a JSON list (`[]`: the control plane's
    /// `embed.frame_ancestors`).
    pub embed_origins: String,
    /// The dashboard's tiles in order, JSON (`[]`: one tile per query, as the API
    /// normalises them; see `app::project_tiles`).
    pub tiles_json: String,
    /// Its parameters (the dashboard's filters), JSON (`[]`: none; see
    /// `app::project_params`).
    pub parameters_json: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Its refresh schedule, if it has one.
    pub schedule: Option<ScheduleState>,
}

/// A project's schedule as stored: what the owner set, and where the scheduler is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleState {
    /// The schedule (cron, time zone, customers), JSON.
    pub json: String,
    /// The next due slot, unix seconds; `None` when the pattern has no next time.
    pub next_run_at: Option<i64>,
    /// How many jobs of the due slot are already dispatched (0 until it is due).
    pub done: i64,
}

/// A move of a project's schedule by one replica, made only if nobody moved it since
/// that replica read it: the slot `due` with `done` jobs dispatched becomes
/// `next_run_at` with `new_done`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleClaim {
    /// Project id.
    pub project_id: String,
    /// The due slot as read.
    pub due: i64,
    /// Its dispatched jobs as read.
    pub done: i64,
    /// The slot after the move (the same `due` while the slot is only partly dispatched).
    pub next_run_at: Option<i64>,
    /// Dispatched jobs after the move.
    pub new_done: i64,
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
    /// Adds or removes a member; `Err` names what does not exist.
    fn set_group_member(
        &self,
        group: String,
        user: String,
        member: bool,
    ) -> impl Future<Output = Result<Result<(), AccessRefusal>, StoreError>> + Send;

    /// Shares a connection; `Err` for an unknown user or group or a duplicate.
    fn add_share(&self, s: ShareRecord) -> impl Future<Output = Result<Result<(), AccessRefusal>, StoreError>> + Send;
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
    /// Replaces a project's name, queries, tiles and parameters; false when unknown.
    fn update_project(
        &self,
        id: String,
        name: String,
        queries_json: String,
        tiles_json: String,
        parameters_json: String,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Deletes a project and its grants; false when unknown.
    fn delete_project(&self, id: String) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Sets (`Some`) or removes (`None`) a user's grant; `Err` for an unknown user.
    fn set_project_grant(
        &self,
        project_id: String,
        user: String,
        grant: Option<Grant>,
    ) -> impl Future<Output = Result<Result<(), AccessRefusal>, StoreError>> + Send;
    /// Invalidates every embed token of a project; returns the new epoch.
    fn bump_embed_epoch(&self, project_id: String) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;
    /// Sets the origins that may frame a project's embed page (a JSON list); false when
    /// there is no such project.
    fn set_embed_origins(
        &self,
        project_id: String,
        origins_json: String,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The newest job of one project query for one customer (or for none) that ran with
    /// `filters` (`JobOrigin::filters`); with `succeeded_only`, the newest that succeeded
    /// (the result a dashboard shows).
    fn latest_project_job(
        &self,
        project_id: String,
        query_index: i64,
        customer: Option<String>,
        filters: Option<String>,
        succeeded_only: bool,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Records the values behind a project job's `filters` key (kept while a job refers
    /// to it; a repeat refreshes `created_at` and keeps `was_default` once set).
    fn remember_filter_set(&self, set: FilterSet) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The values (canonical JSON) behind key `filters` of a project's jobs, if known.
    fn filter_set_values(
        &self,
        project_id: String,
        filters: String,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Sets (`Some`) or removes (`None`) a project's schedule; false when there is no
    /// such project.
    fn set_project_schedule(
        &self,
        project_id: String,
        schedule: Option<ScheduleState>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Projects whose schedule is due at `now` (`next_run_at <= now`), the longest due
    /// first, at most `limit`.
    fn due_projects(&self, now: i64, limit: u32)
        -> impl Future<Output = Result<Vec<ProjectRecord>, StoreError>> + Send;
    /// The earliest `next_run_at` of any project.
    fn next_schedule_at(&self) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;
    /// Moves a schedule by compare-and-set; true for the one caller whose view of the
    /// slot was still current (so each slot's jobs go out once, whatever the replicas).
    fn claim_schedule(&self, claim: ScheduleClaim) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// How many project refresh jobs wait (`queued`) for `agent`, or for `pool` when the
    /// jobs are addressed to a pool.
    fn queued_refresh_jobs(
        &self,
        agent: String,
        pool: Option<String>,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Appends an audit event.
    fn add_audit(&self, e: AuditEvent) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Reads audit events, oldest first.
    fn audit(&self, f: AuditFilter) -> impl Future<Output = Result<Vec<AuditEvent>, StoreError>> + Send;

    /// Deletes jobs (and their results) that ended before `before`, and sessions past
    /// expiry (SQLite zeroes the freed pages; PostgreSQL leaves dead rows until vacuum reuses
    /// them, and result bodies are sealed either way). Returns how many jobs went.
    /// Deletes the jobs that ended at or before `before` (open ones that expired by then),
    /// except the newest succeeded job of each project query and customer while it ended
    /// after `keep_results_after` (a dashboard keeps its latest result), and the sessions
    /// expired at `now`; returns how many jobs went.
    fn purge(
        &self,
        before: i64,
        keep_results_after: i64,
        now: i64,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
    /// Bounds the filter sets kept per tile: for each project query and customer, deletes
    /// the ended jobs of every filter set (`filters` not NULL, never one that
    /// `was_default`) but the `keep` most recently run; then forgets the filter sets that
    /// no job refers to and that were last used before `before`. Returns how many jobs went.
    fn drop_surplus_filter_sets(
        &self,
        keep: u32,
        before: i64,
        now: i64,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
}

/// The values behind a project job's `filters` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterSet {
    /// The project.
    pub project_id: String,
    /// The key jobs record (`JobOrigin::filters`).
    pub filters: String,
    /// The canonical JSON of the values, by parameter name.
    pub values_json: String,
    /// Whether they were the project's defaults when the run used them.
    pub was_default: bool,
    /// When a run used them (Unix seconds).
    pub at: i64,
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

pub(crate) mod postgres;
mod sqlite;

#[cfg(test)]
mod contract_tests;
