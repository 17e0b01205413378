//! What the [`Store`](crate::store::Store) keeps and hands back: jobs and their states,
//! agents, audit heads, enrolment tokens and signing keys, the same for both backends.

use std::sync::Arc;

use outpost_protocol::{Reason, ResultStats};

use crate::store::StoreError;

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
    /// The dashboard filters it ran with: the sha256 (hex) of the canonical JSON of the
    /// values its query binds (`app::project_params::filters_key`); `None` when its query
    /// binds none (and for every job from before parameters).
    pub filters: Option<String>,
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

/// What a redeemed enrolment token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    /// The pool the agent was enrolled into (the token's).
    pub pool: Option<String>,
    /// When the enrolment took effect, unix seconds: its certificate is issued at this
    /// time, and certificates of the name issued before it are refused.
    pub enrolled_at: i64,
    /// Expiry of that certificate, unix seconds.
    pub cert_not_after: i64,
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
