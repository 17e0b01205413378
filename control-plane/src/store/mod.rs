//! The control plane's state, behind the narrow [`Store`] interface.
//!
//! Owns: agents, enrolment tokens (hashes only), API tokens (hashes only), and jobs
//! with their state machine:
//!
//! ```text
//! queued -> leased -> succeeded | failed | rejected | cancelled
//!    \         \---(lease runs out)--> leased again (or cancelled, if a cancel was asked)
//!     \--------+---(expires_at passes)--> expired   (an expired job is never delivered)
//!      \-------(cancel asked)--> cancelled          (a leased job: the agent is told)
//! ```
//!
//! [`SqliteStore`] is the embedded backend (WAL); a PostgreSQL backend for several
//! replicas implements the same trait. Every method is one transaction, so a crash
//! between two calls leaves a consistent state.

pub mod access;
mod access_postgres;
pub mod backend;
pub mod postgres;
mod postgres_jobs;
pub mod queue;

use std::future::Future;
use std::sync::Arc;

use outpost_protocol::{Reason, ResultReport, ResultStats};

mod sqlite;
mod sqlite_db;
mod sqlite_schema;

pub use sqlite::SqliteStore;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL (or the way to it) said no.
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    /// The blocking task failed.
    #[error("database task failed: {0}")]
    Task(String),
    /// The agent is unknown or revoked; its requests are refused.
    #[error("agent {agent:?} is {}", if revoked_at.is_some() { "revoked" } else { "not enrolled" })]
    AgentRefused {
        /// Agent name.
        agent: String,
        /// When it was revoked, if it was.
        revoked_at: Option<i64>,
    },
    /// The certificate was issued before the agent's latest enrolment.
    #[error("agent {agent:?} was enrolled again at {enrolled_at}; this certificate is older")]
    CertificateSuperseded {
        /// Agent name.
        agent: String,
        /// Latest enrolment, unix seconds.
        enrolled_at: i64,
    },
    /// Another key-set change landed first.
    #[error("the key set changed meanwhile (now version {found}, expected {expected}); run the command again")]
    KeySetConflict {
        /// Version the change was built on.
        expected: u64,
        /// Version found.
        found: u64,
    },
    /// The job was signed with a key that has been retired meanwhile.
    #[error("signing key {key_id} was retired meanwhile")]
    KeyRetired {
        /// The key id.
        key_id: String,
    },
    /// The change would break an invariant (e.g. leave no enabled admin).
    #[error("{0}")]
    Conflict(String),
    /// A stored value could not be read back.
    #[error("corrupt row in {table}: {reason}")]
    Corrupt {
        /// Table.
        table: &'static str,
        /// Why.
        reason: String,
    },
}

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for its agent.
    Queued,
    /// Handed to the agent; the lease runs out at `lease_until`.
    Leased,
    /// The agent reported a rendered result.
    Succeeded,
    /// The agent reported a failure.
    Failed,
    /// The agent refused the job.
    Rejected,
    /// It expired before a result came.
    Expired,
    /// A user stopped it: before delivery, or the agent cancelled its query.
    Cancelled,
}

impl From<outpost_protocol::JobOutcome> for JobState {
    /// The final state an agent's report puts its job in.
    fn from(outcome: outpost_protocol::JobOutcome) -> Self {
        use outpost_protocol::JobOutcome;
        match outcome {
            JobOutcome::Succeeded => JobState::Succeeded,
            JobOutcome::Failed => JobState::Failed,
            JobOutcome::Rejected => JobState::Rejected,
            JobOutcome::Cancelled => JobState::Cancelled,
        }
    }
}

impl JobState {
    /// The state's name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Leased => "leased",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Rejected => "rejected",
            JobState::Expired => "expired",
            JobState::Cancelled => "cancelled",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "queued" => JobState::Queued,
            "leased" => JobState::Leased,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "rejected" => JobState::Rejected,
            "expired" => JobState::Expired,
            "cancelled" => JobState::Cancelled,
            other => return Err(StoreError::Corrupt { table: "jobs", reason: format!("state {other:?}") }),
        })
    }

    /// Whether the job has ended.
    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Leased)
    }
}

/// A job to queue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Job id.
    pub id: String,
    /// Target agent; empty for a job addressed to a pool.
    pub agent: String,
    /// Target pool: any one live member may run it.
    pub pool: Option<String>,
    /// Connection name.
    pub connection: String,
    /// The signed envelope, JSON.
    pub envelope_json: String,
    /// The key that signed it; the insert fails if that key is retired.
    pub key_id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; never delivered after this.
    pub expires_at: i64,
    /// Who asked for it and on behalf of which project.
    pub origin: JobOrigin,
}

/// Who dispatched a job, and for which project query and end customer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobOrigin {
    /// User id of the caller (`None` for jobs from before access control).
    pub owner: Option<String>,
    /// Project the job runs a query of.
    pub project_id: Option<String>,
    /// Index of the query in the project.
    pub query_index: Option<i64>,
    /// End customer the project ran for.
    pub customer: Option<String>,
}

/// Which jobs [`Store::jobs`] lists; every field that is set must match (in SQL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// User id of the job's owner (who dispatched it); `None`: everyone's.
    pub owner: Option<String>,
    /// The job's state.
    pub state: Option<JobState>,
    /// The agent that holds or held it, or `pool:NAME` for the jobs addressed to a pool.
    pub agent: Option<String>,
    /// The connection.
    pub connection: Option<String>,
}

/// The `WHERE` clause of [`Store::jobs`] on both backends, with `{p}` for the backend's
/// placeholder prefix (`?` or `$`): 1 owner, 3 state, 4 agent or `pool:NAME`, 5 connection.
pub(crate) fn jobs_filter_sql(p: char, text_cast: &str) -> String {
    format!(
        "({p}1{text_cast} IS NULL OR owner = {p}1) AND ({p}3{text_cast} IS NULL OR state = {p}3) \
         AND ({p}4{text_cast} IS NULL OR agent = {p}4 OR '{pool}' || pool = {p}4) \
         AND ({p}5{text_cast} IS NULL OR connection = {p}5)",
        pool = outpost_protocol::job::POOL_PREFIX
    )
}

/// What [`Store::lease_jobs`] hands out.
#[derive(Debug, Clone, Default)]
pub struct LeaseBatch {
    /// Jobs now leased.
    pub jobs: Vec<LeasedJob>,
    /// Ids of jobs found overdue and marked expired.
    pub expired: Vec<String>,
    /// Ids of jobs whose cancel was asked and whose lease ran out without a report:
    /// now `cancelled`, never delivered again.
    pub cancelled: Vec<String>,
    /// Ids of jobs leased to this agent that it should cancel now.
    pub cancel: Vec<String>,
    /// The key-set version current when the jobs were leased (every job is signed by a
    /// key of that set).
    pub key_set_version: u64,
}

/// A job-signing key as the store knows it (public half only; private keys live in
/// files, never in the database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// Key id.
    pub key_id: String,
    /// Public key, standard base64.
    pub public_key: String,
    /// `active`, `next`, `previous` or `retired`.
    pub status: String,
    /// Unix seconds.
    pub created_at: i64,
    /// When it became active.
    pub activated_at: Option<i64>,
    /// When it was retired.
    pub retired_at: Option<i64>,
}

/// One change of the key set, applied in one transaction by [`Store::commit_key_set`].
#[derive(Debug, Clone)]
pub struct KeySetChange {
    /// The new version; must be the current one plus one.
    pub version: u64,
    /// The signed statement, JSON.
    pub statement_json: String,
    /// Keys whose row is inserted or replaced.
    pub keys: Vec<SigningKeyRecord>,
    /// A key being retired and the active key that re-signs its undelivered jobs.
    pub resign: Option<(String, Arc<outpost_protocol::SigningKey>)>,
    /// Opens and re-seals those jobs' envelopes (`None`: they are in clear, as in tests).
    pub envelopes: Option<Arc<crate::crypto::sealing::ResultCipher>>,
    /// Unix seconds.
    pub now: i64,
}

/// A job handed out by [`Store::lease_jobs`].
#[derive(Debug, Clone)]
pub struct LeasedJob {
    /// Job id.
    pub id: String,
    /// The signed envelope, JSON.
    pub envelope_json: String,
}

/// What the store knows about a job.
#[derive(Debug, Clone)]
pub struct JobRecord {
    /// Job id.
    pub id: String,
    /// The agent: the target, or for a pool's job the member that holds or held it
    /// (empty while no member has taken it).
    pub agent: String,
    /// The pool the job was addressed to.
    pub pool: Option<String>,
    /// Connection.
    pub connection: String,
    /// State.
    pub state: JobState,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// Unix seconds, when final.
    pub finished_at: Option<i64>,
    /// How often it was handed out.
    pub attempts: i64,
    /// Why it failed, was rejected or expired.
    pub reason: Option<Reason>,
    /// Agent's measurements.
    pub stats: Option<ResultStats>,
    /// Rendered body's type.
    pub content_type: Option<String>,
    /// Rendered body (only when asked for).
    pub body: Option<Vec<u8>>,
    /// Unix seconds, when a user asked to cancel it.
    pub cancel_requested_at: Option<i64>,
    /// Who dispatched it and for which project.
    pub origin: JobOrigin,
}

/// Result of [`Store::complete_job`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompleteOutcome {
    /// Stored; the job is now final.
    Accepted,
    /// The identical report was already stored; nothing changed.
    Duplicate,
    /// A different report was already stored, or the job ended otherwise.
    Conflict(JobState),
    /// No such job for this agent.
    NotFound,
}

/// Result of [`Store::cancel_job`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It had not been delivered: now `cancelled`, it never will be.
    Cancelled,
    /// Its agent has it: the agent is told at its next poll and reports `cancelled`
    /// (or its result, if the job finished first).
    Requested {
        /// The agent to wake.
        agent: String,
    },
    /// It had already ended.
    AlreadyFinal(JobState),
    /// No such job.
    NotFound,
}

/// An enrolled agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    /// Name (certificate CN).
    pub name: String,
    /// Unix seconds.
    pub enrolled_at: i64,
    /// Expiry of the latest certificate, unix seconds.
    pub cert_not_after: i64,
    /// Last request seen, unix seconds.
    pub last_seen: Option<i64>,
    /// Reported version.
    pub version: Option<String>,
    /// Reported connection names.
    pub connections: Vec<String>,
    /// When the agent was revoked; its certificate is refused from then on.
    pub revoked_at: Option<i64>,
    /// The pool it was enrolled into.
    pub pool: Option<String>,
    /// When it said it was stopping (a clean shutdown), until its next request.
    pub stopped_at: Option<i64>,
}

impl AgentRecord {
    /// `revoked`, `online` (seen within `offline_after` seconds of `now`, and not stopped
    /// since) or `offline`: the words of the API, the console and the CLI.
    pub fn status(&self, now: i64, offline_after: i64) -> &'static str {
        match (self.revoked_at, self.last_seen) {
            (Some(_), _) => "revoked",
            (None, Some(t)) if now - t <= offline_after && self.stopped_at.is_none() => "online",
            (None, _) => "offline",
        }
    }
}

/// The agent behind a request: the name of its client certificate and when that
/// certificate was issued. Admission checks both, so a certificate issued before the
/// name's latest enrolment (a stolen one, after revocation and re-enrolment) gets nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPeer {
    /// Agent name (certificate CN).
    pub name: String,
    /// Issue time of the certificate, unix seconds.
    pub cert_issued_at: i64,
    /// Its pool, as recorded when the connection was admitted (wake-ups only; leases
    /// read the pool from the store).
    pub pool: Option<String>,
    /// Its certificate's public key (uncompressed P-256 point): the key its audit heads
    /// are signed with.
    pub public_key: Arc<[u8]>,
}

/// The latest audit head an agent reported (its signature checked before it is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAuditHead {
    /// The head's `seq`.
    pub seq: i64,
    /// The head's `hash`.
    pub hash: String,
    /// The head as the agent sent it (JSON of `outpost_protocol::audit_head::AuditHead`).
    pub head_json: String,
    /// When it was received, unix seconds.
    pub received_at: i64,
}

/// What became of a reported audit head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditHeadOutcome {
    /// It is the agent's latest head now.
    Stored,
    /// The stored head is further along (a higher `seq`) or names another record at the
    /// same `seq`: the agent's log went back or forked. The stored head is kept.
    Behind(StoredAuditHead),
    /// The certificate it came with is no longer admitted (revoked, or the name enrolled
    /// again since it was issued): a late request of the old agent, ignored.
    NotAdmitted,
}

/// A stored enrolment token (the secret only as a hash).
#[derive(Debug, Clone)]
pub struct EnrolTokenRecord {
    /// Public id.
    pub id: String,
    /// Bound agent name.
    pub agent: String,
    /// The pool the agent joins.
    pub pool: Option<String>,
    /// SHA-256 of the secret, hex.
    pub secret_sha256: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Whether a stored enrolment token may enrol `agent` at `now`: the secret (compared in
/// constant time) first, then single use, the TTL and the bound name. Both backends read
/// the token row under a lock and then ask this.
pub(crate) fn check_redeem(
    stored_hash: &str,
    secret_sha256: &str,
    used_at: Option<i64>,
    expires_at: i64,
    bound: &str,
    agent: &str,
    now: i64,
) -> Result<(), RedeemError> {
    if !outpost_protocol::encoding::constant_time_eq(stored_hash.as_bytes(), secret_sha256.as_bytes()) {
        return Err(RedeemError::SecretMismatch);
    }
    if let Some(used_at) = used_at {
        return Err(RedeemError::Used { used_at });
    }
    if expires_at < now {
        return Err(RedeemError::Expired { expires_at });
    }
    if bound != agent {
        return Err(RedeemError::WrongAgent { bound: bound.to_owned() });
    }
    Ok(())
}

/// Why an enrolment token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    /// No token with that id.
    #[error("unknown enrolment token")]
    Unknown,
    /// The id exists but the secret does not match: the token was altered.
    #[error("the enrolment token's secret does not match; it was altered or mistyped")]
    SecretMismatch,
    /// Bound to another agent.
    #[error("the enrolment token is bound to agent {bound:?}")]
    WrongAgent {
        /// The name it is bound to.
        bound: String,
    },
    /// Already used.
    #[error("the enrolment token was already used (at {used_at}); create a new one")]
    Used {
        /// Unix seconds.
        used_at: i64,
    },
    /// Past its TTL.
    #[error("the enrolment token expired at {expires_at}; create a new one")]
    Expired {
        /// Unix seconds.
        expires_at: i64,
    },
}

/// The control plane's persistence, narrow on purpose: each method is one transaction.
pub trait Store: crate::store::access::AccessStore + Send + Sync + 'static {
    /// Stores a new enrolment token.
    fn create_enrol_token(&self, t: EnrolTokenRecord) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Enrolment tokens neither used nor expired at `now`, oldest first (their secrets'
    /// hashes are in the records; callers never show them).
    fn outstanding_enrol_tokens(
        &self,
        now: i64,
    ) -> impl Future<Output = Result<Vec<EnrolTokenRecord>, StoreError>> + Send;
    /// Deletes an unused enrolment token (a later enrolment with it is `token_unknown`);
    /// returns the deleted record, `None` when there is no unused token with that id.
    fn revoke_enrol_token(
        &self,
        id: String,
    ) -> impl Future<Output = Result<Option<EnrolTokenRecord>, StoreError>> + Send;
    /// Checks and consumes a token in one transaction; on success the agent is recorded
    /// (in the token's pool, which is returned).
    fn redeem_enrol_token(
        &self,
        id: String,
        secret_sha256: String,
        agent: String,
        now: i64,
        cert_not_after: i64,
    ) -> impl Future<Output = Result<Result<Option<String>, RedeemError>, StoreError>> + Send;
    /// One agent.
    fn agent(&self, name: String) -> impl Future<Output = Result<Option<AgentRecord>, StoreError>> + Send;
    /// All agents, by name.
    fn agents(&self) -> impl Future<Output = Result<Vec<AgentRecord>, StoreError>> + Send;
    /// The agents enrolled into `pool`, by name (revoked ones included).
    fn pool_members(&self, pool: String) -> impl Future<Output = Result<Vec<AgentRecord>, StoreError>> + Send;
    /// Records that an agent was seen; updates version and connections when given.
    fn touch_agent(
        &self,
        agent: AgentPeer,
        now: i64,
        version: Option<String>,
        connections: Option<Vec<String>>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Records that `agent` is stopping cleanly: offline from now until its next request.
    fn agent_stopped(&self, agent: AgentPeer, now: i64) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Keeps `head` as `agent`'s latest audit head unless a head further along is
    /// stored, checking in the same statement that `agent`'s certificate is still
    /// admitted (see [`AuditHeadOutcome`]).
    fn record_audit_head(
        &self,
        agent: AgentPeer,
        head: StoredAuditHead,
    ) -> impl Future<Output = Result<AuditHeadOutcome, StoreError>> + Send;
    /// `agent`'s latest audit head, if it reported one since it enrolled.
    fn audit_head(&self, agent: String) -> impl Future<Output = Result<Option<StoredAuditHead>, StoreError>> + Send;
    /// A job's stored envelope (sealed, or in clear from before sealing), for showing its
    /// SQL to those who may read it; `None` when there is no such job.
    fn job_envelope(&self, id: String) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Queues a job; refuses it if its signing key is retired.
    fn insert_job(&self, job: NewJob) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Leases up to `max` deliverable jobs of `agent` or of its pool (queued, or leased to
    /// any member with the lease run out); expires overdue ones first.
    fn lease_jobs(
        &self,
        agent: AgentPeer,
        now: i64,
        lease_secs: i64,
        max: usize,
    ) -> impl Future<Output = Result<LeaseBatch, StoreError>> + Send;
    /// Fails a job leased to `agent` whose stored envelope cannot be read (code
    /// `corrupt_job`, see [`crate::store::queue`]); `false` when it is no longer leased to it.
    fn fail_corrupt_job(
        &self,
        id: String,
        agent: String,
        now: i64,
        message: String,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Asks to stop a job: a queued one ends `cancelled` at once, a leased one is
    /// marked so that its agent is told.
    fn cancel_job(&self, id: String, now: i64) -> impl Future<Output = Result<CancelOutcome, StoreError>> + Send;
    /// Every job-signing key, retired ones included, and the current key-set version.
    fn signing_keys(&self) -> impl Future<Output = Result<(Vec<SigningKeyRecord>, u64), StoreError>> + Send;
    /// The id of the key that signs new jobs.
    fn active_signing_key(&self) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Applies a key-set change: key rows, the new statement and, for a retirement, the
    /// re-signing of that key's undelivered jobs. Returns how many jobs were re-signed.
    fn commit_key_set(&self, change: KeySetChange) -> impl Future<Output = Result<usize, StoreError>> + Send;
    /// Statements (JSON) with a version above `after`, oldest first, at most `max`.
    fn key_sets_after(&self, after: u64, max: usize) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// Stores an agent's report for its job (idempotent for the same report), with the
    /// rendered body as the caller sealed it (the store never sees it in clear).
    fn complete_job(
        &self,
        agent: AgentPeer,
        report: ResultReport,
        report_sha256: String,
        sealed_body: Option<Vec<u8>>,
        now: i64,
    ) -> impl Future<Output = Result<CompleteOutcome, StoreError>> + Send;
    /// Records a renewed certificate's expiry; refuses an unknown or revoked agent.
    fn record_renewal(
        &self,
        agent: AgentPeer,
        cert_not_after: i64,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Revokes an agent: from now on every request with its certificate is refused, and its
    /// queued or leased jobs end `failed` (a pool's job it held goes back to the pool). Returns the failed job ids, or `None` for an unknown agent.
    fn revoke_agent(
        &self,
        name: String,
        now: i64,
    ) -> impl Future<Output = Result<Option<Vec<String>>, StoreError>> + Send;
    /// Jobs that pass `filter` (its owner, or everyone's), newest first, without bodies.
    fn jobs(
        &self,
        filter: JobFilter,
        limit: u32,
        now: i64,
    ) -> impl Future<Output = Result<Vec<JobRecord>, StoreError>> + Send;
    /// A job (with its body when `with_body`); an overdue job is marked expired first.
    fn job(
        &self,
        id: String,
        now: i64,
        with_body: bool,
    ) -> impl Future<Output = Result<Option<JobRecord>, StoreError>> + Send;
}

/// How often a leased job's cancel is repeated to its agent until it reports, seconds.
pub(crate) const CANCEL_RESEND_SECS: i64 = 10;

/// Why a head was not stored: a stored one further along, or (when none is, or it is
/// not ahead) the certificate was not admitted.
pub(crate) fn behind_or_not_admitted(stored: Option<StoredAuditHead>, head: &StoredAuditHead) -> AuditHeadOutcome {
    match stored {
        Some(s) if s.seq > head.seq || (s.seq == head.seq && s.hash != head.hash) => AuditHeadOutcome::Behind(s),
        _ => AuditHeadOutcome::NotAdmitted,
    }
}

#[cfg(test)]
mod contract_tests;
