//! The store a control plane runs on, chosen by `store:` in control-plane.yaml: the
//! embedded SQLite database (one machine) or PostgreSQL (several replicas). Both
//! implement the same narrow traits; this enum forwards each call to the one in use.

use crate::store::access::*;
use crate::store::postgres::PgStore;
use crate::store::*;
use outpost_protocol::ResultReport;

/// The backend in use.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The embedded database in the data dir.
    Sqlite(SqliteStore),
    /// A PostgreSQL database shared by replicas (boxed: the pool handle is large).
    Postgres(Box<PgStore>),
}

impl Backend {
    /// At a clean stop: SQLite's write-ahead log is copied into the database file and
    /// emptied, so that the data dir's `control-plane.db` alone holds every change (a copy
    /// of it is then a whole backup). PostgreSQL: nothing to do.
    pub async fn close(&self) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite(s) => s.checkpoint_alone().await,
            Backend::Postgres(_) => Ok(()),
        }
    }
}

macro_rules! forward {
    ($self:ident, $method:ident($($arg:ident),*)) => {
        match $self {
            Backend::Sqlite(s) => s.$method($($arg),*).await,
            Backend::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

impl Store for Backend {
    async fn create_enrol_token(&self, t: EnrolTokenRecord) -> Result<(), StoreError> {
        forward!(self, create_enrol_token(t))
    }
    async fn outstanding_enrol_tokens(&self, now: i64) -> Result<Vec<EnrolTokenRecord>, StoreError> {
        forward!(self, outstanding_enrol_tokens(now))
    }
    async fn revoke_enrol_token(&self, id: String) -> Result<Option<EnrolTokenRecord>, StoreError> {
        forward!(self, revoke_enrol_token(id))
    }
    async fn redeem_enrol_token(
        &self,
        id: String,
        secret_sha256: String,
        agent: String,
        now: i64,
        cert_not_after: i64,
    ) -> Result<Result<Option<String>, RedeemError>, StoreError> {
        forward!(self, redeem_enrol_token(id, secret_sha256, agent, now, cert_not_after))
    }
    async fn agent(&self, name: String) -> Result<Option<AgentRecord>, StoreError> {
        forward!(self, agent(name))
    }
    async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        forward!(self, agents())
    }
    async fn pool_members(&self, pool: String) -> Result<Vec<AgentRecord>, StoreError> {
        forward!(self, pool_members(pool))
    }
    async fn touch_agent(
        &self,
        agent: AgentPeer,
        now: i64,
        version: Option<String>,
        connections: Option<Vec<String>>,
    ) -> Result<(), StoreError> {
        forward!(self, touch_agent(agent, now, version, connections))
    }
    async fn agent_stopped(&self, agent: AgentPeer, now: i64) -> Result<(), StoreError> {
        forward!(self, agent_stopped(agent, now))
    }
    async fn record_audit_head(&self, agent: AgentPeer, head: StoredAuditHead) -> Result<AuditHeadOutcome, StoreError> {
        forward!(self, record_audit_head(agent, head))
    }
    async fn audit_head(&self, agent: String) -> Result<Option<StoredAuditHead>, StoreError> {
        forward!(self, audit_head(agent))
    }
    async fn job_envelope(&self, id: String) -> Result<Option<String>, StoreError> {
        forward!(self, job_envelope(id))
    }
    async fn insert_job(&self, job: NewJob) -> Result<(), StoreError> {
        forward!(self, insert_job(job))
    }
    async fn lease_jobs(
        &self,
        agent: AgentPeer,
        now: i64,
        lease_secs: i64,
        max: usize,
    ) -> Result<LeaseBatch, StoreError> {
        forward!(self, lease_jobs(agent, now, lease_secs, max))
    }
    async fn fail_corrupt_job(&self, id: String, agent: String, now: i64, message: String) -> Result<bool, StoreError> {
        forward!(self, fail_corrupt_job(id, agent, now, message))
    }
    async fn cancel_job(&self, id: String, now: i64) -> Result<CancelOutcome, StoreError> {
        forward!(self, cancel_job(id, now))
    }
    async fn signing_keys(&self) -> Result<(Vec<SigningKeyRecord>, u64), StoreError> {
        forward!(self, signing_keys())
    }
    async fn active_signing_key(&self) -> Result<Option<String>, StoreError> {
        forward!(self, active_signing_key())
    }
    async fn commit_key_set(&self, change: KeySetChange) -> Result<usize, StoreError> {
        forward!(self, commit_key_set(change))
    }
    async fn key_sets_after(&self, after: u64, max: usize) -> Result<Vec<String>, StoreError> {
        forward!(self, key_sets_after(after, max))
    }
    async fn complete_job(
        &self,
        agent: AgentPeer,
        report: ResultReport,
        report_sha256: String,
        sealed_body: Option<Vec<u8>>,
        now: i64,
    ) -> Result<CompleteOutcome, StoreError> {
        forward!(self, complete_job(agent, report, report_sha256, sealed_body, now))
    }
    async fn record_renewal(&self, agent: AgentPeer, cert_not_after: i64, now: i64) -> Result<(), StoreError> {
        forward!(self, record_renewal(agent, cert_not_after, now))
    }
    async fn revoke_agent(&self, name: String, now: i64) -> Result<Option<Vec<String>>, StoreError> {
        forward!(self, revoke_agent(name, now))
    }
    async fn jobs(&self, filter: JobFilter, limit: u32, now: i64) -> Result<Vec<JobRecord>, StoreError> {
        forward!(self, jobs(filter, limit, now))
    }
    async fn job(&self, id: String, now: i64, with_body: bool) -> Result<Option<JobRecord>, StoreError> {
        forward!(self, job(id, now, with_body))
    }
}

impl AccessStore for Backend {
    async fn create_user(&self, u: UserRecord) -> Result<bool, StoreError> {
        forward!(self, create_user(u))
    }
    async fn user_by_name(&self, name: String) -> Result<Option<UserRecord>, StoreError> {
        forward!(self, user_by_name(name))
    }
    async fn user_by_id(&self, id: String) -> Result<Option<UserRecord>, StoreError> {
        forward!(self, user_by_id(id))
    }
    async fn oidc_user(&self, issuer: String, subject: String) -> Result<Option<UserRecord>, StoreError> {
        forward!(self, oidc_user(issuer, subject))
    }
    async fn oidc_linked(&self, user_id: String, issuer: String) -> Result<bool, StoreError> {
        forward!(self, oidc_linked(user_id, issuer))
    }
    async fn link_oidc(&self, issuer: String, subject: String, user_id: String, now: i64) -> Result<bool, StoreError> {
        forward!(self, link_oidc(issuer, subject, user_id, now))
    }
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        forward!(self, users())
    }
    async fn update_user(&self, name: String, update: UserUpdate, now: i64) -> Result<Option<UserRecord>, StoreError> {
        forward!(self, update_user(name, update, now))
    }
    async fn record_sign_in(&self, user_id: String, now: i64) -> Result<(), StoreError> {
        forward!(self, record_sign_in(user_id, now))
    }
    async fn create_group(&self, name: String, now: i64) -> Result<bool, StoreError> {
        forward!(self, create_group(name, now))
    }
    async fn delete_group(&self, name: String) -> Result<bool, StoreError> {
        forward!(self, delete_group(name))
    }
    async fn groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        forward!(self, groups())
    }
    async fn set_group_member(
        &self,
        group: String,
        user: String,
        member: bool,
    ) -> Result<Result<(), String>, StoreError> {
        forward!(self, set_group_member(group, user, member))
    }
    async fn add_share(&self, s: ShareRecord) -> Result<Result<(), String>, StoreError> {
        forward!(self, add_share(s))
    }
    async fn shares(&self) -> Result<Vec<ShareRecord>, StoreError> {
        forward!(self, shares())
    }
    async fn delete_share(&self, id: String) -> Result<bool, StoreError> {
        forward!(self, delete_share(id))
    }
    async fn shared_connections(&self, user_id: String) -> Result<Vec<(String, String)>, StoreError> {
        forward!(self, shared_connections(user_id))
    }
    async fn create_session(&self, s: SessionRecord) -> Result<(), StoreError> {
        forward!(self, create_session(s))
    }
    async fn session(
        &self,
        id_sha256: String,
        now: i64,
        idle_secs: i64,
    ) -> Result<Option<(SessionRecord, UserRecord)>, StoreError> {
        forward!(self, session(id_sha256, now, idle_secs))
    }
    async fn delete_session(&self, id_sha256: String) -> Result<(), StoreError> {
        forward!(self, delete_session(id_sha256))
    }
    async fn add_token(&self, t: ApiTokenRecord) -> Result<(), StoreError> {
        forward!(self, add_token(t))
    }
    async fn token_auth(
        &self,
        token_sha256: String,
        now: i64,
    ) -> Result<Option<(ApiTokenRecord, UserRecord)>, StoreError> {
        forward!(self, token_auth(token_sha256, now))
    }
    async fn tokens(&self, user_id: Option<String>) -> Result<Vec<ApiTokenRecord>, StoreError> {
        forward!(self, tokens(user_id))
    }
    async fn token(&self, id: String) -> Result<Option<ApiTokenRecord>, StoreError> {
        forward!(self, token(id))
    }
    async fn revoke_token(&self, id: String, now: i64) -> Result<bool, StoreError> {
        forward!(self, revoke_token(id, now))
    }
    async fn create_project(&self, p: ProjectRecord) -> Result<(), StoreError> {
        forward!(self, create_project(p))
    }
    async fn project(&self, id: String) -> Result<Option<ProjectRecord>, StoreError> {
        forward!(self, project(id))
    }
    async fn projects_for(&self, user_id: Option<String>) -> Result<Vec<(ProjectRecord, Option<Grant>)>, StoreError> {
        forward!(self, projects_for(user_id))
    }
    async fn project_grant(&self, project_id: String, user_id: String) -> Result<Option<Grant>, StoreError> {
        forward!(self, project_grant(project_id, user_id))
    }
    async fn project_grants(&self, project_id: String) -> Result<Vec<(String, Grant)>, StoreError> {
        forward!(self, project_grants(project_id))
    }
    async fn update_project(
        &self,
        id: String,
        name: String,
        queries_json: String,
        now: i64,
    ) -> Result<bool, StoreError> {
        forward!(self, update_project(id, name, queries_json, now))
    }
    async fn delete_project(&self, id: String) -> Result<bool, StoreError> {
        forward!(self, delete_project(id))
    }
    async fn set_project_grant(
        &self,
        project_id: String,
        user: String,
        grant: Option<Grant>,
    ) -> Result<Result<(), String>, StoreError> {
        forward!(self, set_project_grant(project_id, user, grant))
    }
    async fn bump_embed_epoch(&self, project_id: String) -> Result<Option<i64>, StoreError> {
        forward!(self, bump_embed_epoch(project_id))
    }
    async fn latest_project_job(
        &self,
        project_id: String,
        query_index: i64,
        customer: Option<String>,
        succeeded_only: bool,
    ) -> Result<Option<String>, StoreError> {
        forward!(self, latest_project_job(project_id, query_index, customer, succeeded_only))
    }
    async fn add_audit(&self, e: AuditEvent) -> Result<(), StoreError> {
        forward!(self, add_audit(e))
    }
    async fn audit(&self, f: AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        forward!(self, audit(f))
    }
    async fn purge(&self, before: i64, keep_results_after: i64, now: i64) -> Result<usize, StoreError> {
        forward!(self, purge(before, keep_results_after, now))
    }
}
