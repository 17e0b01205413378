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
use std::path::Path;
use std::sync::Arc;

use outpost_protocol::{JobOutcome, Reason, ResultReport, ResultStats};
use rusqlite::{params, Connection, OptionalExtension};

mod sqlite_db;
mod sqlite_schema;

use sqlite_schema::{MIGRATIONS, SCHEMA_VERSION};

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

/// An enrolment token row: id, agent, pool, secret_sha256, created_at, expires_at.
fn enrol_token_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EnrolTokenRecord> {
    Ok(EnrolTokenRecord {
        id: r.get(0)?,
        agent: r.get(1)?,
        pool: r.get(2)?,
        secret_sha256: r.get(3)?,
        created_at: r.get(4)?,
        expires_at: r.get(5)?,
    })
}

fn sqlite_audit_head(c: &Connection, agent: &str) -> Result<Option<StoredAuditHead>, StoreError> {
    Ok(c.prepare_cached("SELECT seq, hash, head, received_at FROM audit_heads WHERE agent = ?1")?
        .query_row(params![agent], |r| {
            Ok(StoredAuditHead { seq: r.get(0)?, hash: r.get(1)?, head_json: r.get(2)?, received_at: r.get(3)? })
        })
        .optional()?)
}

/// SQLite backend.
#[derive(Clone)]
pub struct SqliteStore {
    db: sqlite_db::SqliteDb,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // Create the file 0600 before SQLite does (it would use the umask); the WAL and
        // shared-memory files inherit the database file's mode.
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| StoreError::Task(format!("{}: {e}", path.display())))?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL: readers do not block the writer. synchronous=NORMAL in WAL mode keeps the
        // database consistent after a crash; a power cut may lose the last transactions.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // Deleted rows (expired results, sessions) are overwritten with zeros, not left in
        // free pages for someone with the file to read.
        conn.pragma_update(None, "secure_delete", true)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        // Migrations run in order, each in its own transaction with the version bump.
        for &(target, sql) in MIGRATIONS {
            if version < target {
                conn.execute_batch(&format!("BEGIN IMMEDIATE; {sql} PRAGMA user_version = {target}; COMMIT;"))?;
            }
        }
        if version > SCHEMA_VERSION {
            return Err(StoreError::Corrupt {
                table: "schema",
                reason: format!("database schema {version} is newer than this build ({SCHEMA_VERSION})"),
            });
        }
        Ok(Self { db: sqlite_db::SqliteDb::start(path, conn)? })
    }

    /// Runs `f` on the writer's connection, in a savepoint of the group it is committed
    /// with; returns once that group is committed. Every change goes through here.
    pub(crate) async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.db.write(f).await
    }

    /// Copies the WAL into the database file and empties it (outside any transaction,
    /// after the changes queued before it are committed).
    pub(crate) async fn checkpoint_alone(&self) -> Result<(), StoreError> {
        self.db
            .write_alone(|c| {
                let (busy, _, _): (i64, i64, i64) =
                    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                if busy != 0 {
                    tracing::debug!("WAL checkpoint was busy (a reader); the next one completes it.");
                }
                Ok(())
            })
            .await
    }

    /// Runs `f` on a read-only connection beside the writer (it sees the last commit).
    pub(crate) async fn with_read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.db.read(f).await
    }
}

fn current_key_set_version(tx: &Connection) -> Result<u64, StoreError> {
    let v: i64 = tx.prepare_cached("SELECT COALESCE(MAX(version), 0) FROM key_sets")?.query_row([], |r| r.get(0))?;
    Ok(u64::try_from(v).unwrap_or(0))
}

fn agent_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRecord> {
    let conns: String = r.get(5)?;
    Ok(AgentRecord {
        name: r.get(0)?,
        enrolled_at: r.get(1)?,
        cert_not_after: r.get(2)?,
        last_seen: r.get(3)?,
        version: r.get(4)?,
        connections: serde_json::from_str(&conns).unwrap_or_default(),
        revoked_at: r.get(6)?,
        pool: r.get(7)?,
        stopped_at: r.get(8)?,
    })
}

const AGENT_COLS: &str =
    "name, enrolled_at, cert_not_after, last_seen, version, connections, revoked_at, pool, stopped_at";

/// Admits a request of `agent`: it must be enrolled, not revoked, and its certificate
/// must not predate the name's latest enrolment. Records it as seen in the same
/// statement, so the check costs no extra round trip.
fn admit_agent(tx: &Connection, agent: &AgentPeer, now: i64) -> Result<Option<String>, StoreError> {
    let admitted: Option<Option<String>> = tx
        .prepare_cached(
            "UPDATE agents SET last_seen = ?2, stopped_at = NULL
             WHERE name = ?1 AND revoked_at IS NULL AND enrolled_at <= ?3
             RETURNING pool",
        )?
        .query_row(params![agent.name, now, agent.cert_issued_at], |r| r.get(0))
        .optional()?;
    if let Some(pool) = admitted {
        return Ok(pool);
    }
    let row: Option<(Option<i64>, i64)> = tx
        .prepare_cached("SELECT revoked_at, enrolled_at FROM agents WHERE name = ?1")?
        .query_row(params![agent.name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Err(match row {
        Some((None, enrolled_at)) => StoreError::CertificateSuperseded { agent: agent.name.clone(), enrolled_at },
        Some((revoked_at, _)) => StoreError::AgentRefused { agent: agent.name.clone(), revoked_at },
        None => StoreError::AgentRefused { agent: agent.name.clone(), revoked_at: None },
    })
}

const JOB_COLS: &str = "id, agent, connection, state, created_at, expires_at, finished_at, attempts,
     reason_code, reason_message, stats, content_type";

/// A job row (columns [`JOB_COLS`], then the body or NULL, `cancel_requested_at` and the
/// origin) and its state text.
fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, JobRecord)> {
    let code: Option<String> = r.get(8)?;
    let message: Option<String> = r.get(9)?;
    let stats: Option<String> = r.get(10)?;
    Ok((
        r.get::<_, String>(3)?,
        JobRecord {
            id: r.get(0)?,
            agent: r.get(1)?,
            connection: r.get(2)?,
            state: JobState::Queued,
            created_at: r.get(4)?,
            expires_at: r.get(5)?,
            finished_at: r.get(6)?,
            attempts: r.get(7)?,
            reason: code.map(|code| Reason { code, message: message.unwrap_or_default() }),
            stats: stats.and_then(|s| serde_json::from_str(&s).ok()),
            content_type: r.get(11)?,
            body: r.get(12)?,
            cancel_requested_at: r.get(13)?,
            origin: JobOrigin {
                owner: r.get(14)?,
                project_id: r.get(15)?,
                query_index: r.get(16)?,
                customer: r.get(17)?,
            },
            pool: r.get(18)?,
        },
    ))
}

const FAIL_CORRUPT_JOB_SQLITE: &str = "UPDATE jobs SET state = 'failed', finished_at = ?3, lease_until = NULL,
         reason_code = 'corrupt_job', reason_message = ?4
     WHERE id = ?1 AND agent = ?2 AND state = 'leased'";

/// Leases the oldest deliverable jobs of agent `?1` (or of its pool `?5`) until `?2 + ?3`,
/// at most `?4`. Each branch names the open states, so that the index seeks (agent, state)
/// and (pool, state): with only `agent = ?1` it read every job the agent ever ran on every
/// poll, and throughput fell as the history grew (issue 24).
const LEASE_SQLITE: &str =
    "UPDATE jobs SET state = 'leased', agent = ?1, lease_until = ?2 + ?3, attempts = attempts + 1
     WHERE id IN (SELECT id FROM jobs
                  WHERE ((agent = ?1 AND pool IS NULL AND state IN ('queued', 'leased'))
                         OR (pool = ?5 AND state IN ('queued', 'leased')))
                  AND expires_at >= ?2
                  AND cancel_requested_at IS NULL
                  AND (state = 'queued' OR (state = 'leased' AND lease_until < ?2))
                  ORDER BY created_at, id LIMIT ?4)
     RETURNING id, envelope, created_at";

fn expire_overdue(tx: &Connection, where_sql: &str, arg: &str, now: i64) -> Result<Vec<String>, StoreError> {
    let mut stmt = tx.prepare_cached(&format!(
        "UPDATE jobs SET state = 'expired', finished_at = ?2, lease_until = NULL,
             reason_code = 'expired', reason_message = 'the job expired before its agent returned a result'
         WHERE {where_sql} AND state IN ('queued', 'leased') AND expires_at < ?2 RETURNING id"
    ))?;
    let ids = stmt.query_map(params![arg, now], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

impl Store for SqliteStore {
    async fn create_enrol_token(&self, t: EnrolTokenRecord) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO enrol_tokens (id, agent, secret_sha256, created_at, expires_at, pool)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![t.id, t.agent, t.secret_sha256, t.created_at, t.expires_at, t.pool],
            )?;
            Ok(())
        })
        .await
    }

    async fn outstanding_enrol_tokens(&self, now: i64) -> Result<Vec<EnrolTokenRecord>, StoreError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached(
                "SELECT id, agent, pool, secret_sha256, created_at, expires_at FROM enrol_tokens
                 WHERE used_at IS NULL AND expires_at >= ?1 ORDER BY created_at, id",
            )?
            .query_map(params![now], enrol_token_from_row)?
            .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn revoke_enrol_token(&self, id: String) -> Result<Option<EnrolTokenRecord>, StoreError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached(
                "DELETE FROM enrol_tokens WHERE id = ?1 AND used_at IS NULL
                 RETURNING id, agent, pool, secret_sha256, created_at, expires_at",
            )?
            .query_row(params![id], enrol_token_from_row)
            .optional()?)
        })
        .await
    }

    async fn redeem_enrol_token(
        &self,
        id: String,
        secret_sha256: String,
        agent: String,
        now: i64,
        cert_not_after: i64,
    ) -> Result<Result<Option<String>, RedeemError>, StoreError> {
        self.with_conn(move |c| {
            let tx = c.savepoint()?;
            type TokenRow = (String, String, i64, Option<i64>, Option<String>);
            let row: Option<TokenRow> = tx
                .query_row(
                    "SELECT agent, secret_sha256, expires_at, used_at, pool FROM enrol_tokens WHERE id = ?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()?;
            let Some((bound, stored_hash, expires_at, used_at, pool)) = row else {
                return Ok(Err(RedeemError::Unknown));
            };
            if !outpost_protocol::encoding::constant_time_eq(stored_hash.as_bytes(), secret_sha256.as_bytes()) {
                return Ok(Err(RedeemError::SecretMismatch));
            }
            if let Some(used_at) = used_at {
                return Ok(Err(RedeemError::Used { used_at }));
            }
            if expires_at < now {
                return Ok(Err(RedeemError::Expired { expires_at }));
            }
            if bound != agent {
                return Ok(Err(RedeemError::WrongAgent { bound }));
            }
            tx.execute("UPDATE enrol_tokens SET used_at = ?2 WHERE id = ?1", params![id, now])?;
            // A new enrolment re-admits a revoked name (e.g. after a lost agent key).
            tx.execute(
                "INSERT INTO agents (name, enrolled_at, cert_not_after, pool) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET enrolled_at = excluded.enrolled_at,
                     cert_not_after = excluded.cert_not_after, revoked_at = NULL, pool = excluded.pool",
                params![agent, now, cert_not_after, pool],
            )?;
            // A new enrolment starts a new account of its audit log (a reinstalled agent
            // starts it again at 1).
            tx.execute("DELETE FROM audit_heads WHERE agent = ?1", params![agent])?;
            tx.commit()?;
            Ok(Ok(pool))
        })
        .await
    }

    async fn agent(&self, name: String) -> Result<Option<AgentRecord>, StoreError> {
        self.with_read(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {AGENT_COLS} FROM agents WHERE name = ?1"))?
                .query_row(params![name], agent_from_row)
                .optional()?)
        })
        .await
    }

    async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(&format!("SELECT {AGENT_COLS} FROM agents ORDER BY name"))?;
            let rows = stmt.query_map([], agent_from_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn pool_members(&self, pool: String) -> Result<Vec<AgentRecord>, StoreError> {
        self.with_conn(move |c| {
            let mut stmt =
                c.prepare_cached(&format!("SELECT {AGENT_COLS} FROM agents WHERE pool = ?1 ORDER BY name"))?;
            let rows = stmt.query_map(params![pool], agent_from_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn touch_agent(
        &self,
        agent: AgentPeer,
        now: i64,
        version: Option<String>,
        connections: Option<Vec<String>>,
    ) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            let conns = connections.map(|v| serde_json::to_string(&v).unwrap_or_else(|_| "[]".into()));
            admit_agent(c, &agent, now)?;
            c.prepare_cached(
                "UPDATE agents SET version = COALESCE(?2, version), connections = COALESCE(?3, connections) WHERE name = ?1",
            )?
            .execute(params![agent.name, version, conns])?;
            Ok(())
        })
        .await
    }

    async fn agent_stopped(&self, agent: AgentPeer, now: i64) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.prepare_cached(
                "UPDATE agents SET last_seen = ?2, stopped_at = ?2
                 WHERE name = ?1 AND revoked_at IS NULL AND enrolled_at <= ?3",
            )?
            .execute(params![agent.name, now, agent.cert_issued_at])?;
            Ok(())
        })
        .await
    }

    async fn record_audit_head(&self, agent: AgentPeer, head: StoredAuditHead) -> Result<AuditHeadOutcome, StoreError> {
        self.with_conn(move |c| {
            let n = c
                .prepare_cached(
                    "INSERT INTO audit_heads (agent, seq, hash, head, received_at)
                     SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (
                         SELECT 1 FROM agents WHERE name = ?1 AND revoked_at IS NULL AND enrolled_at <= ?6)
                     ON CONFLICT(agent) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, head = excluded.head,
                         received_at = excluded.received_at
                     WHERE excluded.seq > audit_heads.seq
                        OR (excluded.seq = audit_heads.seq AND excluded.hash = audit_heads.hash)",
                )?
                .execute(params![
                    agent.name,
                    head.seq,
                    head.hash,
                    head.head_json,
                    head.received_at,
                    agent.cert_issued_at
                ])?;
            if n > 0 {
                return Ok(AuditHeadOutcome::Stored);
            }
            Ok(behind_or_not_admitted(sqlite_audit_head(c, &agent.name)?, &head))
        })
        .await
    }

    async fn audit_head(&self, agent: String) -> Result<Option<StoredAuditHead>, StoreError> {
        self.with_conn(move |c| sqlite_audit_head(c, &agent)).await
    }

    async fn job_envelope(&self, id: String) -> Result<Option<String>, StoreError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached("SELECT envelope FROM jobs WHERE id = ?1")?
                .query_row(params![id], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn insert_job(&self, job: NewJob) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            // The key check and the insert are one statement, so a retirement that re-signs
            // the retired key's jobs cannot miss this one.
            let n = c
                .prepare_cached(
                    "INSERT INTO jobs (id, agent, connection, state, envelope, created_at, expires_at, key_id,
                                       owner, project_id, query_index, customer, pool)
                     SELECT ?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12
                     WHERE EXISTS (SELECT 1 FROM signing_keys WHERE key_id = ?7 AND status != 'retired')",
                )?
                .execute(params![
                    job.id,
                    job.agent,
                    job.connection,
                    job.envelope_json,
                    job.created_at,
                    job.expires_at,
                    job.key_id,
                    job.origin.owner,
                    job.origin.project_id,
                    job.origin.query_index,
                    job.origin.customer,
                    job.pool
                ])?;
            if n == 0 {
                return Err(StoreError::KeyRetired { key_id: job.key_id });
            }
            Ok(())
        })
        .await
    }

    async fn lease_jobs(
        &self,
        agent: AgentPeer,
        now: i64,
        lease_secs: i64,
        max: usize,
    ) -> Result<LeaseBatch, StoreError> {
        self.with_conn(move |c| {
            let tx = c.savepoint()?;
            let pool = admit_agent(&tx, &agent, now)?;
            let mut expired = expire_overdue(&tx, "agent = ?1", &agent.name, now)?;
            if let Some(p) = &pool {
                expired.extend(expire_overdue(&tx, "pool = ?1 AND agent = ''", p, now)?);
            }
            // A job whose cancel was asked is never handed out again: if its lease ran
            // out without a report, the agent is gone or lost it, and it ends here.
            let cancelled = tx
                .prepare_cached(
                    "UPDATE jobs SET state = 'cancelled', finished_at = ?2, lease_until = NULL,
                         reason_code = 'cancelled',
                         reason_message = 'cancelled at a user''s request; the agent did not report before its lease ran out'
                     WHERE agent = ?1 AND state = 'leased' AND cancel_requested_at IS NOT NULL AND lease_until < ?2
                     RETURNING id",
                )?
                .query_map(params![agent.name, now], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            // Told again every CANCEL_RESEND_SECS until the agent reports: a poll answer
            // lost on the way must not lose the cancel.
            let cancel = tx
                .prepare_cached(
                    "UPDATE jobs SET cancel_sent_at = ?2
                     WHERE agent = ?1 AND state = 'leased' AND cancel_requested_at IS NOT NULL
                       AND (cancel_sent_at IS NULL OR cancel_sent_at <= ?2 - ?3)
                     RETURNING id",
                )?
                .query_map(params![agent.name, now, CANCEL_RESEND_SECS], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            let jobs = {
                let mut stmt = tx.prepare_cached(LEASE_SQLITE)?;
                let mut rows = stmt
                    .query_map(params![agent.name, now, lease_secs, max as i64, pool], |r| {
                        Ok((r.get::<_, i64>(2)?, LeasedJob { id: r.get(0)?, envelope_json: r.get(1)? }))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                rows.sort_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
                rows.into_iter().map(|(_, j)| j).collect::<Vec<_>>()
            };
            let key_set_version = current_key_set_version(&tx)?;
            tx.commit()?;
            Ok(LeaseBatch { jobs, expired, cancelled, cancel, key_set_version })
        })
        .await
    }

    async fn fail_corrupt_job(&self, id: String, agent: String, now: i64, message: String) -> Result<bool, StoreError> {
        self.with_conn(move |c| {
            let n = c.prepare_cached(FAIL_CORRUPT_JOB_SQLITE)?.execute(params![id, agent, now, message])?;
            Ok(n == 1)
        })
        .await
    }

    async fn cancel_job(&self, id: String, now: i64) -> Result<CancelOutcome, StoreError> {
        self.with_conn(move |c| {
            let tx = c.savepoint()?;
            expire_overdue(&tx, "id = ?1", &id, now)?;
            let row: Option<(String, String)> = tx
                .prepare_cached("SELECT state, agent FROM jobs WHERE id = ?1")?
                .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((state, agent)) = row else {
                return Ok(CancelOutcome::NotFound);
            };
            let outcome = match JobState::parse(&state)? {
                JobState::Queued => {
                    tx.execute(
                        "UPDATE jobs SET state = 'cancelled', finished_at = ?2, cancel_requested_at = ?2,
                             reason_code = 'cancelled',
                             reason_message = 'cancelled at a user''s request before the agent received it'
                         WHERE id = ?1",
                        params![id, now],
                    )?;
                    CancelOutcome::Cancelled
                }
                JobState::Leased => {
                    tx.execute(
                        "UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, ?2) WHERE id = ?1",
                        params![id, now],
                    )?;
                    CancelOutcome::Requested { agent }
                }
                other => CancelOutcome::AlreadyFinal(other),
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    async fn signing_keys(&self) -> Result<(Vec<SigningKeyRecord>, u64), StoreError> {
        self.with_conn(|c| {
            let tx = c.savepoint()?;
            let keys = tx
                .prepare(
                    "SELECT key_id, public_key, status, created_at, activated_at, retired_at FROM signing_keys
                     ORDER BY created_at, key_id",
                )?
                .query_map([], |r| {
                    Ok(SigningKeyRecord {
                        key_id: r.get(0)?,
                        public_key: r.get(1)?,
                        status: r.get(2)?,
                        created_at: r.get(3)?,
                        activated_at: r.get(4)?,
                        retired_at: r.get(5)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let version = current_key_set_version(&tx)?;
            tx.commit()?;
            Ok((keys, version))
        })
        .await
    }

    async fn active_signing_key(&self) -> Result<Option<String>, StoreError> {
        self.with_read(|c| {
            Ok(c.prepare_cached("SELECT key_id FROM signing_keys WHERE status = 'active'")?
                .query_row([], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn commit_key_set(&self, change: KeySetChange) -> Result<usize, StoreError> {
        self.with_conn(move |c| {
            let tx = c.savepoint()?;
            let found = current_key_set_version(&tx)?;
            if found + 1 != change.version {
                return Err(StoreError::KeySetConflict { expected: change.version.saturating_sub(1), found });
            }
            // Demotions first, so that the one-active index holds after every statement.
            let mut keys = change.keys.clone();
            keys.sort_by_key(|k| k.status == "active");
            for k in &keys {
                tx.execute(
                    "INSERT INTO signing_keys (key_id, public_key, status, created_at, activated_at, retired_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (key_id) DO UPDATE SET status = ?3, activated_at = ?5, retired_at = ?6",
                    params![k.key_id, k.public_key, k.status, k.created_at, k.activated_at, k.retired_at],
                )?;
            }
            let version = i64::try_from(change.version)
                .map_err(|_| StoreError::Corrupt { table: "key_sets", reason: "version overflow".into() })?;
            tx.execute(
                "INSERT INTO key_sets (version, statement, created_at) VALUES (?1, ?2, ?3)",
                params![version, change.statement_json, change.now],
            )?;
            let mut resigned = 0;
            if let Some((retired, active)) = &change.resign {
                let pending = tx
                    .prepare("SELECT id, envelope FROM jobs WHERE key_id = ?1 AND state IN ('queued', 'leased')")?
                    .query_map(params![retired], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                for (id, envelope) in pending {
                    // One bad row never blocks the rotation: it fails, the others are re-signed.
                    let Some(new) = crate::store::queue::resigned(&id, &envelope, active, change.envelopes.as_deref())
                    else {
                        tx.execute(
                            "UPDATE jobs SET state = 'failed', finished_at = ?2, lease_until = NULL,
                                 reason_code = 'corrupt_job', reason_message = ?3
                             WHERE id = ?1",
                            params![id, change.now, crate::store::queue::CORRUPT_JOB_MESSAGE],
                        )?;
                        continue;
                    };
                    tx.execute(
                        "UPDATE jobs SET envelope = ?2, key_id = ?3 WHERE id = ?1",
                        params![id, new, active.key_id().0],
                    )?;
                    resigned += 1;
                }
            }
            tx.commit()?;
            Ok(resigned)
        })
        .await
    }

    async fn key_sets_after(&self, after: u64, max: usize) -> Result<Vec<String>, StoreError> {
        self.with_conn(move |c| {
            let after = i64::try_from(after).unwrap_or(i64::MAX);
            Ok(c.prepare_cached("SELECT statement FROM key_sets WHERE version > ?1 ORDER BY version LIMIT ?2")?
                .query_map(params![after, max as i64], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?)
        })
        .await
    }

    async fn complete_job(
        &self,
        agent: AgentPeer,
        report: ResultReport,
        report_sha256: String,
        sealed_body: Option<Vec<u8>>,
        now: i64,
    ) -> Result<CompleteOutcome, StoreError> {
        self.with_conn(move |c| {
            let tx = c.savepoint()?;
            admit_agent(&tx, &agent, now)?;
            let row: Option<(String, Option<String>)> = tx
                .prepare_cached("SELECT state, report_sha256 FROM jobs WHERE id = ?1 AND agent = ?2")?
                .query_row(params![report.job_id, agent.name], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((state, stored_hash)) = row else {
                return Ok(CompleteOutcome::NotFound);
            };
            let state = JobState::parse(&state)?;
            if state.is_final() {
                return Ok(if stored_hash.as_deref() == Some(report_sha256.as_str()) {
                    CompleteOutcome::Duplicate
                } else {
                    CompleteOutcome::Conflict(state)
                });
            }
            let new_state = match report.status {
                JobOutcome::Succeeded => JobState::Succeeded,
                JobOutcome::Failed => JobState::Failed,
                JobOutcome::Rejected => JobState::Rejected,
                JobOutcome::Cancelled => JobState::Cancelled,
            };
            let body = sealed_body;
            let stats = serde_json::to_string(&report.stats).unwrap_or_default();
            let (code, message) = report.reason.map(|r| (r.code, r.message)).unzip();
            tx.prepare_cached(
                "UPDATE jobs SET state = ?2, finished_at = ?3, lease_until = NULL, report_sha256 = ?4,
                     reason_code = ?5, reason_message = ?6, stats = ?7, content_type = ?8, body = ?9 WHERE id = ?1",
            )?
            .execute(params![
                report.job_id,
                new_state.as_str(),
                now,
                report_sha256,
                code,
                message,
                stats,
                report.content_type,
                body
            ])?;
            tx.commit()?;
            Ok(CompleteOutcome::Accepted)
        })
        .await
    }

    async fn record_renewal(&self, agent: AgentPeer, cert_not_after: i64, now: i64) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            let tx = c.savepoint()?;
            admit_agent(&tx, &agent, now)?;
            tx.execute("UPDATE agents SET cert_not_after = ?2 WHERE name = ?1", params![agent.name, cert_not_after])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn revoke_agent(&self, name: String, now: i64) -> Result<Option<Vec<String>>, StoreError> {
        self.with_conn(move |c| {
            let tx = c.savepoint()?;
            let n = tx.execute("UPDATE agents SET revoked_at = COALESCE(revoked_at, ?2) WHERE name = ?1", params![name, now])?;
            if n == 0 {
                return Ok(None);
            }
            // A pool's job this agent held goes back to the pool; its own jobs fail.
            tx.execute(
                "UPDATE jobs SET state = 'queued', agent = '', lease_until = NULL
                 WHERE agent = ?1 AND pool IS NOT NULL AND state = 'leased'",
                params![name],
            )?;
            let failed = tx
                .prepare(
                    "UPDATE jobs SET state = 'failed', finished_at = ?2, lease_until = NULL, reason_code = 'agent_revoked',
                         reason_message = 'the agent was revoked before it returned a result'
                     WHERE agent = ?1 AND pool IS NULL AND state IN ('queued', 'leased') RETURNING id",
                )?
                .query_map(params![name, now], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            tx.commit()?;
            Ok(Some(failed))
        })
        .await
    }

    async fn jobs(&self, filter: JobFilter, limit: u32, now: i64) -> Result<Vec<JobRecord>, StoreError> {
        self.with_conn(move |c| {
            let tx = c.savepoint()?;
            match &filter.owner {
                Some(o) => expire_overdue(&tx, "owner = ?1", o, now)?,
                None => expire_overdue(&tx, "?1 IS NOT NULL", "", now)?,
            };
            let rows = tx
                .prepare_cached(&format!(
                    "SELECT {JOB_COLS}, NULL, cancel_requested_at, owner, project_id, query_index, customer, pool
                     FROM jobs WHERE {} ORDER BY created_at DESC, rowid DESC LIMIT ?2",
                    jobs_filter_sql('?', "")
                ))?
                .query_map(
                    params![filter.owner, limit, filter.state.map(JobState::as_str), filter.agent, filter.connection],
                    job_from_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit()?;
            // One bad row never hides the others: it is left out, and logged.
            Ok(rows
                .into_iter()
                .filter_map(|(state, mut rec)| match JobState::parse(&state) {
                    Ok(st) => {
                        rec.state = st;
                        Some(rec)
                    }
                    Err(e) => {
                        tracing::error!(job_id = %rec.id, error = %e, "A stored job cannot be read; it is left out of the list.");
                        None
                    }
                })
                .collect())
        })
        .await
    }

    async fn job(&self, id: String, now: i64, with_body: bool) -> Result<Option<JobRecord>, StoreError> {
        // Read beside the writer; a job found overdue is read again by the writer, which
        // marks it expired first.
        let sql = format!(
            "SELECT {JOB_COLS}, CASE WHEN ?2 THEN body END,
                    cancel_requested_at, owner, project_id, query_index, customer, pool
             FROM jobs WHERE id = ?1"
        );
        let (key, query) = (id.clone(), sql.clone());
        let rec = self
            .with_read(move |c| {
                Ok(c.prepare_cached(&query)?.query_row(params![key, with_body], job_from_row).optional()?)
            })
            .await?;
        let rec = match rec {
            Some((state, rec)) if matches!(state.as_str(), "queued" | "leased") && rec.expires_at < now => {
                self.with_conn(move |c| {
                    let tx = c.savepoint()?;
                    expire_overdue(&tx, "id = ?1", &id, now)?;
                    let rec = tx.prepare_cached(&sql)?.query_row(params![id, with_body], job_from_row).optional()?;
                    tx.commit()?;
                    Ok(rec)
                })
                .await?
            }
            other => other,
        };
        match rec {
            None => Ok(None),
            Some((state, mut rec)) => {
                rec.state = JobState::parse(&state)?;
                Ok(Some(rec))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_protocol::ids::new_job_id;

    /// An enrolled agent `edge-1` and an active signing key, in either backend.
    async fn seed<S: Store>(store: &S) {
        store
            .create_enrol_token(EnrolTokenRecord {
                id: "t1".into(),
                agent: "edge-1".into(),
                pool: None,
                secret_sha256: "h".into(),
                created_at: 0,
                expires_at: 10_000,
            })
            .await
            .expect("token");
        store.redeem_enrol_token("t1".into(), "h".into(), "edge-1".into(), 1, 100).await.expect("db").expect("redeem");
        let key = SigningKeyRecord {
            key_id: "ed25519:test".into(),
            public_key: String::new(),
            status: "active".into(),
            created_at: 0,
            activated_at: Some(0),
            retired_at: None,
        };
        let change = KeySetChange {
            version: 1,
            statement_json: "{}".into(),
            keys: vec![key],
            resign: None,
            envelopes: None,
            now: 0,
        };
        store.commit_key_set(change).await.expect("key set");
    }

    fn peer(name: &str) -> AgentPeer {
        AgentPeer { name: name.into(), cert_issued_at: 1, pool: None, public_key: Arc::from(&[][..]) }
    }

    fn job(id: &str, expires_at: i64) -> NewJob {
        NewJob {
            id: id.into(),
            agent: "edge-1".into(),
            pool: None,
            connection: "sample".into(),
            envelope_json: "{}".into(),
            key_id: "ed25519:test".into(),
            created_at: 1000,
            expires_at,
            origin: Default::default(),
        }
    }

    fn report(id: &str, body: &[u8]) -> ResultReport {
        ResultReport::succeeded(id, "application/json", body, ResultStats::default())
    }

    async fn enrolment_token_is_single_use_and_its_failures_are_told_apart<S: Store>(store: &S) {
        let again = store.redeem_enrol_token("t1".into(), "h".into(), "edge-1".into(), 2, 100).await.expect("db");
        assert_eq!(again, Err(RedeemError::Used { used_at: 1 }));
        let wrong = store.redeem_enrol_token("t1".into(), "x".into(), "edge-1".into(), 2, 100).await.expect("db");
        assert_eq!(wrong, Err(RedeemError::SecretMismatch));
        let unknown = store.redeem_enrol_token("nope".into(), "h".into(), "edge-1".into(), 2, 100).await.expect("db");
        assert_eq!(unknown, Err(RedeemError::Unknown));
        store
            .create_enrol_token(EnrolTokenRecord {
                id: "t2".into(),
                agent: "edge-2".into(),
                pool: None,
                secret_sha256: "h2".into(),
                created_at: 0,
                expires_at: 50,
            })
            .await
            .expect("token");
        let other = store.redeem_enrol_token("t2".into(), "h2".into(), "edge-9".into(), 10, 100).await.expect("db");
        assert_eq!(other, Err(RedeemError::WrongAgent { bound: "edge-2".into() }));
        let late = store.redeem_enrol_token("t2".into(), "h2".into(), "edge-2".into(), 51, 100).await.expect("db");
        assert_eq!(late, Err(RedeemError::Expired { expires_at: 50 }));
    }

    async fn outstanding_enrolment_tokens_are_listed_and_an_unused_one_can_be_revoked<S: Store>(store: &S) {
        for (id, expires_at) in [("tok-a", 5000), ("tok-b", 5000), ("tok-old", 50)] {
            let t = EnrolTokenRecord {
                id: id.into(),
                agent: format!("agent-{id}"),
                pool: (id == "tok-b").then(|| "pool-1".into()),
                secret_sha256: "h".into(),
                created_at: 10,
                expires_at,
            };
            store.create_enrol_token(t).await.expect("token");
        }
        // `t1` (used by `seed`) and `tok-old` (expired) are not outstanding.
        let ids = |v: Vec<EnrolTokenRecord>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
        assert_eq!(ids(store.outstanding_enrol_tokens(100).await.expect("list")), ["tok-a", "tok-b"]);
        let gone = store.revoke_enrol_token("tok-b".into()).await.expect("revoke").expect("was there");
        assert_eq!((gone.agent.as_str(), gone.pool.as_deref()), ("agent-tok-b", Some("pool-1")));
        assert!(store.revoke_enrol_token("tok-b".into()).await.expect("revoke").is_none(), "once");
        assert!(store.revoke_enrol_token("t1".into()).await.expect("revoke").is_none(), "a used token stays");
        assert_eq!(ids(store.outstanding_enrol_tokens(100).await.expect("list")), ["tok-a"]);
        let redeemed = store.redeem_enrol_token("tok-b".into(), "h".into(), "agent-tok-b".into(), 100, 200).await;
        assert_eq!(redeemed.expect("db"), Err(RedeemError::Unknown), "a revoked token enrols nobody");
    }

    async fn the_same_result_twice_is_accepted_once_and_a_different_one_is_refused<S: Store>(store: &S) {
        let id = new_job_id();
        store.insert_job(job(&id, 5000)).await.expect("insert");
        let leased = store.lease_jobs(peer("edge-1"), 1001, 60, 10).await.expect("lease").jobs;
        assert_eq!(leased.len(), 1);
        let r = report(&id, b"{}");
        assert_eq!(
            store
                .complete_job(peer("edge-1"), r.clone(), "hash-a".into(), Some(b"{}".to_vec()), 1002)
                .await
                .expect("c"),
            CompleteOutcome::Accepted
        );
        assert_eq!(
            store
                .complete_job(peer("edge-1"), r.clone(), "hash-a".into(), Some(b"{}".to_vec()), 1003)
                .await
                .expect("c"),
            CompleteOutcome::Duplicate
        );
        assert_eq!(
            store
                .complete_job(peer("edge-1"), report(&id, b"[]"), "hash-b".into(), Some(b"[]".to_vec()), 1004)
                .await
                .expect("c"),
            CompleteOutcome::Conflict(JobState::Succeeded)
        );
        let stranger = store.complete_job(peer("edge-2"), r, "hash-a".into(), Some(b"{}".to_vec()), 1005).await;
        assert!(matches!(stranger, Err(StoreError::AgentRefused { .. })), "{stranger:?}");
        let rec = store.job(id, 1006, true).await.expect("job").expect("exists");
        assert_eq!(rec.state, JobState::Succeeded);
        assert_eq!(rec.body.as_deref(), Some(&b"{}"[..]));
    }

    /// Two different results of one job at once (a retry racing the first upload): one is
    /// stored, the other is told it conflicts, never that the job does not exist.
    async fn two_different_results_at_once_store_one_and_refuse_the_other<S: Store>(store: &S) {
        for round in 0..8_i64 {
            let id = new_job_id();
            store.insert_job(job(&id, 5000)).await.expect("insert");
            assert_eq!(store.lease_jobs(peer("edge-1"), 1001 + round, 60, 10).await.expect("lease").jobs.len(), 1);
            let (a, b) = tokio::join!(
                store.complete_job(peer("edge-1"), report(&id, b"{}"), "hash-a".into(), None, 1002 + round),
                store.complete_job(peer("edge-1"), report(&id, b"[]"), "hash-b".into(), None, 1002 + round),
            );
            let mut outcomes = [a.expect("a"), b.expect("b")];
            outcomes.sort_by_key(|o| format!("{o:?}"));
            assert_eq!(outcomes, [CompleteOutcome::Accepted, CompleteOutcome::Conflict(JobState::Succeeded)]);
        }
    }

    /// A revocation racing a poll: whichever the database orders first, once both
    /// returned no job is left leased to the revoked agent (its own fail, its pool's go
    /// back) and a poll after the revocation is refused.
    async fn a_revocation_racing_a_poll_leaves_nothing_leased_to_the_revoked_agent<S: Store>(store: &S) {
        for round in 0..12_i64 {
            let (name, token) = (format!("racer-{round}"), format!("race-{round}"));
            let t = EnrolTokenRecord {
                id: token.clone(),
                agent: name.clone(),
                pool: Some("race".into()),
                secret_sha256: "h".into(),
                created_at: 0,
                expires_at: 10_000,
            };
            store.create_enrol_token(t).await.expect("token");
            store.redeem_enrol_token(token, "h".into(), name.clone(), 1, 100).await.expect("db").expect("redeem");
            let mut ids = Vec::new();
            for own in [false, true, false, true] {
                let id = new_job_id();
                let mut j = job(&id, 5000);
                if own {
                    j.agent.clone_from(&name);
                } else {
                    (j.agent, j.pool) = (String::new(), Some("race".into()));
                }
                store.insert_job(j).await.expect("insert");
                ids.push(id);
            }
            let racer = AgentPeer { name: name.clone(), ..peer("") };
            let (_, revoked) =
                tokio::join!(store.lease_jobs(racer.clone(), 1001, 60, 10), store.revoke_agent(name.clone(), 1001));
            assert!(revoked.expect("revoke").is_some());
            for id in &ids {
                let rec = store.job(id.clone(), 1002, false).await.expect("job").expect("exists");
                assert!(
                    !(rec.state == JobState::Leased && rec.agent == name),
                    "round {round}: job {id} stayed leased to the revoked agent"
                );
            }
            assert!(store.lease_jobs(racer, 1003, 60, 10).await.is_err(), "round {round}");
        }
    }

    /// A poll and a result say the agent was seen (at most one write a second), and the
    /// first poll after a clean stop clears it; a revoked agent's poll writes nothing.
    async fn polls_and_results_mark_the_agent_seen<S: Store>(store: &S) {
        let seen = |name: &'static str| async move {
            let a = store.agent(name.into()).await.expect("agent").expect("exists");
            (a.last_seen, a.stopped_at)
        };
        store.lease_jobs(peer("edge-1"), 2000, 60, 10).await.expect("lease");
        assert_eq!(seen("edge-1").await, (Some(2000), None));
        store.agent_stopped(peer("edge-1"), 2001).await.expect("stop");
        assert_eq!(seen("edge-1").await, (Some(2001), Some(2001)));
        store.lease_jobs(peer("edge-1"), 2001, 60, 10).await.expect("lease");
        assert_eq!(seen("edge-1").await, (Some(2001), None), "the poll after a clean stop clears it");
        let id = new_job_id();
        store.insert_job(job(&id, 5000)).await.expect("insert");
        assert_eq!(store.lease_jobs(peer("edge-1"), 2002, 60, 10).await.expect("lease").jobs.len(), 1);
        assert_eq!(seen("edge-1").await, (Some(2002), None));
        let done = store.complete_job(peer("edge-1"), report(&id, b"{}"), "h".into(), None, 2003).await;
        assert_eq!(done.expect("complete"), CompleteOutcome::Accepted);
        assert_eq!(seen("edge-1").await, (Some(2003), None));
        store.revoke_agent("edge-1".into(), 2004).await.expect("revoke");
        assert!(store.lease_jobs(peer("edge-1"), 2005, 60, 10).await.is_err());
        assert_eq!(seen("edge-1").await, (Some(2003), None), "a refused poll is not a sighting");
    }

    async fn a_cancel_ends_a_queued_job_and_is_told_to_the_agent_of_a_leased_one<S: Store>(store: &S) {
        let (queued, leased) = (new_job_id(), new_job_id());
        store.insert_job(job(&leased, 5000)).await.expect("insert");
        assert_eq!(store.lease_jobs(peer("edge-1"), 1001, 60, 10).await.expect("lease").jobs.len(), 1);
        store.insert_job(job(&queued, 5000)).await.expect("insert");
        assert_eq!(store.cancel_job(queued.clone(), 1002).await.expect("c"), CancelOutcome::Cancelled);
        assert_eq!(
            store.cancel_job(leased.clone(), 1002).await.expect("c"),
            CancelOutcome::Requested { agent: "edge-1".into() }
        );
        // The busy agent polls with max 0: it hears of the cancel once, and again only
        // after CANCEL_RESEND_SECS; the cancelled queued job is never leased.
        let b = store.lease_jobs(peer("edge-1"), 1003, 60, 0).await.expect("lease");
        assert_eq!((b.jobs.len(), b.cancel.clone()), (0, vec![leased.clone()]));
        assert!(store.lease_jobs(peer("edge-1"), 1004, 60, 10).await.expect("lease").cancel.is_empty());
        let b = store.lease_jobs(peer("edge-1"), 1003 + CANCEL_RESEND_SECS, 60, 10).await.expect("lease");
        assert_eq!((b.jobs.len(), b.cancel), (0, vec![leased.clone()]));
        // The lease runs out without a report: the job ends cancelled, not leased again.
        let b = store.lease_jobs(peer("edge-1"), 1062, 60, 10).await.expect("lease");
        assert_eq!((b.jobs.len(), b.cancelled), (0, vec![leased.clone()]));
        assert_eq!(store.job(leased.clone(), 1063, false).await.expect("j").expect("e").state, JobState::Cancelled);
        assert_eq!(store.cancel_job(leased, 1064).await.expect("c"), CancelOutcome::AlreadyFinal(JobState::Cancelled));
        assert_eq!(store.cancel_job(new_job_id(), 1064).await.expect("c"), CancelOutcome::NotFound);
    }

    async fn an_agent_that_finishes_before_the_cancel_reaches_it_keeps_its_result<S: Store>(store: &S) {
        let id = new_job_id();
        store.insert_job(job(&id, 5000)).await.expect("insert");
        store.lease_jobs(peer("edge-1"), 1001, 60, 10).await.expect("lease");
        store.cancel_job(id.clone(), 1002).await.expect("c");
        let outcome = store
            .complete_job(peer("edge-1"), report(&id, b"{}"), "h".into(), Some(b"{}".to_vec()), 1003)
            .await
            .expect("c");
        assert_eq!(outcome, CompleteOutcome::Accepted);
        let rec = store.job(id, 1004, false).await.expect("j").expect("e");
        assert_eq!((rec.state, rec.cancel_requested_at), (JobState::Succeeded, Some(1002)));
    }

    async fn a_lease_not_completed_in_time_is_handed_out_again<S: Store>(store: &S) {
        let id = new_job_id();
        store.insert_job(job(&id, 5000)).await.expect("insert");
        assert_eq!(store.lease_jobs(peer("edge-1"), 1001, 10, 10).await.expect("l").jobs.len(), 1);
        assert!(store.lease_jobs(peer("edge-1"), 1005, 10, 10).await.expect("l").jobs.is_empty(), "still leased");
        let again = store.lease_jobs(peer("edge-1"), 1012, 10, 10).await.expect("l").jobs;
        assert_eq!(again.len(), 1, "lease ran out at 1011");
        let rec = store.job(id, 1013, false).await.expect("job").expect("exists");
        assert_eq!(rec.attempts, 2);
    }

    async fn an_expired_job_is_never_delivered<S: Store>(store: &S) {
        let id = new_job_id();
        store.insert_job(job(&id, 1500)).await.expect("insert");
        let batch = store.lease_jobs(peer("edge-1"), 1501, 60, 10).await.expect("lease");
        let (leased, expired) = (batch.jobs, batch.expired);
        assert!(leased.is_empty());
        assert_eq!(expired, vec![id.clone()]);
        let rec = store.job(id, 1502, false).await.expect("job").expect("exists");
        assert_eq!(rec.state, JobState::Expired);
        assert_eq!(rec.reason.map(|r| r.code).as_deref(), Some("expired"));
    }

    async fn reading_an_overdue_job_marks_it_expired<S: Store>(store: &S) {
        let id = new_job_id();
        store.insert_job(job(&id, 1500)).await.expect("insert");
        assert_eq!(store.job(id.clone(), 1400, false).await.expect("job").expect("exists").state, JobState::Queued);
        assert_eq!(store.job(id, 1600, false).await.expect("job").expect("exists").state, JobState::Expired);
    }

    async fn a_revoked_agent_is_refused_and_its_queued_jobs_fail<S: Store>(store: &S) {
        let id = new_job_id();
        store.insert_job(job(&id, 5000)).await.expect("insert");
        assert_eq!(store.revoke_agent("edge-1".into(), 1100).await.expect("revoke"), Some(vec![id.clone()]));
        assert_eq!(store.revoke_agent("nobody".into(), 1100).await.expect("revoke"), None);
        let refused = store.lease_jobs(peer("edge-1"), 1101, 60, 10).await;
        assert!(matches!(refused, Err(StoreError::AgentRefused { revoked_at: Some(1100), .. })), "{refused:?}");
        let refused =
            store.complete_job(peer("edge-1"), report(&id, b"{}"), "h".into(), Some(b"{}".to_vec()), 1102).await;
        assert!(matches!(refused, Err(StoreError::AgentRefused { .. })), "{refused:?}");
        let rec = store.job(id, 1103, false).await.expect("job").expect("exists");
        assert_eq!(rec.state, JobState::Failed);
        assert_eq!(rec.reason.map(|r| r.code).as_deref(), Some("agent_revoked"));
        let unknown = store.lease_jobs(peer("ghost"), 1101, 60, 10).await;
        assert!(matches!(unknown, Err(StoreError::AgentRefused { revoked_at: None, .. })), "{unknown:?}");
    }

    #[test]
    fn database_file_is_created_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cp.db");
        SqliteStore::open(&path).expect("open");
        assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
    }

    /// A poll reads the agent's open jobs, not its history: with 3,000 finished jobs the
    /// lease statement takes about as many steps as with none (it read every one of them
    /// before, and throughput fell as the history grew).
    #[tokio::test]
    async fn leasing_does_not_read_the_agents_finished_jobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("cp.db")).expect("open");
        seed(&store).await;
        store.insert_job(job("open-1", 5000)).await.expect("insert");
        let lease_steps = |store: SqliteStore| async move {
            store
                .with_conn(|c| {
                    let tx = c.savepoint()?;
                    let (steps, leased) = {
                        let mut stmt = tx.prepare(LEASE_SQLITE)?;
                        let leased = stmt
                            .query_map(params!["edge-1", 1100, 60, 10, None::<String>], |r| r.get::<_, String>(0))?
                            .collect::<Result<Vec<_>, _>>()?;
                        (stmt.get_status(rusqlite::StatementStatus::VmStep), leased)
                    };
                    drop(tx); // rolled back
                    Ok((steps, leased))
                })
                .await
                .expect("lease")
        };
        let (before, leased) = lease_steps(store.clone()).await;
        assert_eq!(leased, ["open-1"]);
        store
            .with_conn(|c| {
                c.execute_batch(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
                     INSERT INTO jobs (id, agent, connection, state, envelope, created_at, expires_at, finished_at)
                     SELECT 'done-' || i, 'edge-1', 'sample', 'succeeded', '{}', 900, 5000, 950 FROM n",
                )?;
                Ok(())
            })
            .await
            .expect("history");
        let (after, leased) = lease_steps(store.clone()).await;
        assert_eq!(leased, ["open-1"]);
        assert!(after < before + 100, "the lease took {after} steps with 3,000 finished jobs, {before} without");
    }

    /// A job is stored only under a key that may still sign: an unknown or retired key is
    /// refused and nothing is queued.
    async fn a_job_under_a_key_that_cannot_sign_is_not_queued<S: Store>(store: &S) {
        let refused = store.insert_job(NewJob { key_id: "ed25519:gone".into(), ..job("j-gone", 5000) }).await;
        assert!(
            matches!(refused, Err(StoreError::KeyRetired { ref key_id }) if key_id == "ed25519:gone"),
            "{refused:?}"
        );
        assert!(store.job("j-gone".into(), 1001, false).await.expect("db").is_none());
        store.insert_job(job("j-ok", 5000)).await.expect("the active key signs");
        let leased = store.lease_jobs(peer("edge-1"), 1001, 60, 10).await.expect("lease");
        assert_eq!(leased.jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["j-ok"]);
    }

    /// Enrols `name` into `pool` (token redeemed at t=1).
    async fn enrol_member<S: Store>(store: &S, name: &str, pool: &str) {
        let id = format!("t-{name}");
        store
            .create_enrol_token(EnrolTokenRecord {
                id: id.clone(),
                agent: name.into(),
                pool: Some(pool.into()),
                secret_sha256: "h".into(),
                created_at: 0,
                expires_at: 10_000,
            })
            .await
            .expect("token");
        let joined = store.redeem_enrol_token(id, "h".into(), name.into(), 1, 100).await.expect("db").expect("redeem");
        assert_eq!(joined.as_deref(), Some(pool));
    }

    fn pool_job(id: &str, pool: &str) -> NewJob {
        NewJob { agent: String::new(), pool: Some(pool.into()), ..job(id, 5000) }
    }

    async fn a_pool_job_goes_to_one_member_and_to_another_when_its_lease_runs_out<S: Store>(store: &S) {
        enrol_member(store, "p1", "eu").await;
        enrol_member(store, "p2", "eu").await;
        enrol_member(store, "q1", "us").await;
        let members: Vec<String> =
            store.pool_members("eu".into()).await.expect("members").into_iter().map(|a| a.name).collect();
        assert_eq!(members, ["p1", "p2"]);
        let id = new_job_id();
        store.insert_job(pool_job(&id, "eu")).await.expect("insert");
        assert!(store.lease_jobs(peer("edge-1"), 1001, 60, 10).await.expect("lease").jobs.is_empty(), "not a member");
        assert!(store.lease_jobs(peer("q1"), 1001, 60, 10).await.expect("lease").jobs.is_empty(), "another pool");
        assert_eq!(store.lease_jobs(peer("p1"), 1001, 60, 10).await.expect("lease").jobs.len(), 1);
        assert!(store.lease_jobs(peer("p2"), 1002, 60, 10).await.expect("lease").jobs.is_empty(), "leased to p1");
        let rec = store.job(id.clone(), 1002, false).await.expect("job").expect("exists");
        assert_eq!((rec.agent.as_str(), rec.pool.as_deref(), rec.state), ("p1", Some("eu"), JobState::Leased));
        // p1 dies: its lease runs out and p2 gets the job.
        assert_eq!(store.lease_jobs(peer("p2"), 1062, 60, 10).await.expect("lease").jobs.len(), 1);
        let late = store.complete_job(peer("p1"), report(&id, b"{}"), "a".into(), None, 1063).await.expect("c");
        assert_eq!(late, CompleteOutcome::NotFound, "only the member holding the lease may report");
        let done = store.complete_job(peer("p2"), report(&id, b"{}"), "b".into(), None, 1064).await.expect("c");
        assert_eq!(done, CompleteOutcome::Accepted);
        let rec = store.job(id, 1065, false).await.expect("job").expect("exists");
        assert_eq!((rec.agent.as_str(), rec.attempts, rec.state), ("p2", 2, JobState::Succeeded));
    }

    async fn a_revoked_members_pool_job_goes_back_to_the_pool<S: Store>(store: &S) {
        enrol_member(store, "p1", "eu").await;
        enrol_member(store, "p2", "eu").await;
        let id = new_job_id();
        store.insert_job(pool_job(&id, "eu")).await.expect("insert");
        assert_eq!(store.lease_jobs(peer("p1"), 1001, 60, 10).await.expect("lease").jobs.len(), 1);
        let failed = store.revoke_agent("p1".into(), 1002).await.expect("revoke").expect("known");
        assert!(failed.is_empty(), "a pool's job does not fail with one member: {failed:?}");
        let again = store.lease_jobs(peer("p2"), 1003, 60, 10).await.expect("lease").jobs;
        assert_eq!(again.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    }

    /// Two members lease concurrently, one job per call, as two replicas would serve
    /// them: every job is handed out exactly once.
    async fn concurrent_members_never_lease_the_same_job<S: Store + Clone>(store: &S) {
        enrol_member(store, "p1", "eu").await;
        enrol_member(store, "p2", "eu").await;
        let ids: Vec<String> = (0..60).map(|_| new_job_id()).collect();
        for id in &ids {
            store.insert_job(pool_job(id, "eu")).await.expect("insert");
        }
        let mut tasks = Vec::new();
        for member in ["p1", "p2", "p1", "p2"] {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let batch = store.lease_jobs(peer(member), 1001, 60, 1).await.expect("lease").jobs;
                    if batch.is_empty() {
                        return got;
                    }
                    got.extend(batch.into_iter().map(|j| j.id));
                }
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("task"));
        }
        all.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(all, expected, "each job leased exactly once");
    }

    /// SQL run on the store's database directly, as damage from outside would be.
    trait RawSql {
        fn raw(&self, sql: &str) -> impl Future<Output = ()> + Send;
    }

    impl RawSql for SqliteStore {
        async fn raw(&self, sql: &str) {
            let sql = sql.to_owned();
            self.with_conn(move |c| Ok(c.execute_batch(&sql)?)).await.expect("raw SQL on SQLite");
        }
    }

    impl RawSql for crate::store::postgres::PgStore {
        async fn raw(&self, sql: &str) {
            self.client().await.expect("client").batch_execute(sql).await.expect("raw SQL on PostgreSQL");
        }
    }

    async fn a_job_whose_envelope_cannot_be_read_fails_alone_and_the_others_go_on<S: Store + RawSql>(store: &S) {
        let (key, _) = outpost_protocol::SigningKey::generate().expect("key");
        let envelope = serde_json::to_string(&key.sign_payload(b"{\"sql\":\"SELECT 1\"}")).expect("json");
        let keys = tempfile::tempdir().expect("dir");
        let cipher =
            Arc::new(crate::crypto::sealing::ResultCipher::load_or_create(keys.path()).expect("results key").0);
        let (bad, good) = (new_job_id(), new_job_id());
        for (id, at) in [(&bad, 1000), (&good, 1001)] {
            let sealed = cipher.seal_envelope(id, &envelope);
            store.insert_job(NewJob { envelope_json: sealed, created_at: at, ..job(id, 5000) }).await.expect("insert");
        }
        // The older job's row is damaged: the poll that leases it must not fail, and the
        // good job behind it is delivered by that same poll.
        store.raw(&format!("UPDATE jobs SET envelope = '{{\"key_id\": SECRET-ROW-TEXT' WHERE id = '{bad}'")).await;
        let got =
            crate::store::queue::lease_deliverable(store, &cipher, &peer("edge-1"), 1100, 60, 1).await.expect("lease");
        assert_eq!(got.jobs.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), [good.as_str()]);
        assert_eq!(got.corrupt.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [bad.as_str()]);
        let rec = store.job(bad.clone(), 1100, false).await.expect("db").expect("job");
        assert_eq!(rec.state, JobState::Failed);
        let reason = rec.reason.expect("reason");
        assert_eq!(reason.code, "corrupt_job");
        assert!(!reason.message.contains("SECRET"), "the row's content is never quoted: {}", reason.message);
        // It is never leased again, nor failed twice.
        let again =
            crate::store::queue::lease_deliverable(store, &cipher, &peer("edge-1"), 1101, 60, 4).await.expect("lease");
        assert!(again.jobs.is_empty() && again.corrupt.is_empty(), "{again:?}");

        // A key rotation re-signs the good undelivered jobs and fails a damaged one
        // instead of failing the rotation.
        let (waiting, damaged) = (new_job_id(), new_job_id());
        for id in [&waiting, &damaged] {
            let sealed = cipher.seal_envelope(id, &envelope);
            store.insert_job(NewJob { envelope_json: sealed, ..job(id, 5000) }).await.expect("insert");
        }
        store.raw(&format!("UPDATE jobs SET envelope = 'not json' WHERE id = '{damaged}'")).await;
        let (active, _) = outpost_protocol::SigningKey::generate().expect("key");
        let change = KeySetChange {
            version: 2,
            statement_json: "{}".into(),
            keys: vec![],
            resign: Some(("ed25519:test".into(), Arc::new(active))),
            envelopes: Some(Arc::clone(&cipher)),
            now: 1200,
        };
        let resigned = store.commit_key_set(change).await.expect("rotation");
        assert_eq!(resigned, 2, "the good undelivered jobs (one leased, one queued) are re-signed");
        let rec = store.job(damaged, 1200, false).await.expect("db").expect("job");
        assert_eq!((rec.state, rec.reason.map(|r| r.code)), (JobState::Failed, Some("corrupt_job".into())));
        assert_eq!(store.job(waiting, 1200, false).await.expect("db").expect("job").state, JobState::Queued);
    }

    async fn an_agents_audit_head_only_moves_forward_and_a_new_enrolment_starts_it_again<S: Store>(store: &S) {
        let head = |seq: i64, hash: &str, at: i64| StoredAuditHead {
            seq,
            hash: hash.repeat(64),
            head_json: format!("{{\"seq\":{seq}}}"),
            received_at: at,
        };
        assert_eq!(store.audit_head("edge-1".into()).await.expect("db"), None, "nothing reported yet");
        assert_eq!(
            store.record_audit_head(peer("edge-1"), head(10, "a", 100)).await.expect("db"),
            AuditHeadOutcome::Stored
        );
        assert_eq!(
            store.record_audit_head(peer("edge-1"), head(12, "b", 101)).await.expect("db"),
            AuditHeadOutcome::Stored
        );
        // The same head again only moves the time on.
        assert_eq!(
            store.record_audit_head(peer("edge-1"), head(12, "b", 102)).await.expect("db"),
            AuditHeadOutcome::Stored
        );
        assert_eq!(store.audit_head("edge-1".into()).await.expect("db"), Some(head(12, "b", 102)));
        // A log that went back, or another record at the same seq, does not replace it.
        for stale in [head(11, "c", 103), head(12, "d", 103)] {
            let out = store.record_audit_head(peer("edge-1"), stale).await.expect("db");
            assert_eq!(out, AuditHeadOutcome::Behind(head(12, "b", 102)));
        }
        assert_eq!(store.audit_head("edge-1".into()).await.expect("db"), Some(head(12, "b", 102)));
        assert_eq!(store.audit_head("edge-2".into()).await.expect("db"), None, "per agent");
        // Enrolling the name again (a reinstalled agent) forgets the old log's head.
        let t = EnrolTokenRecord {
            id: "t-again".into(),
            agent: "edge-1".into(),
            pool: None,
            secret_sha256: "h".into(),
            created_at: 100,
            expires_at: 5000,
        };
        store.create_enrol_token(t).await.expect("token");
        let again = store.redeem_enrol_token("t-again".into(), "h".into(), "edge-1".into(), 104, 9000).await;
        again.expect("db").expect("enrolled");
        assert_eq!(store.audit_head("edge-1".into()).await.expect("db"), None);
        // A late request of the old certificate cannot put the old log's head back.
        let late = store.record_audit_head(peer("edge-1"), head(40, "f", 105)).await.expect("db");
        assert_eq!(late, AuditHeadOutcome::NotAdmitted);
        assert_eq!(store.audit_head("edge-1".into()).await.expect("db"), None);
        let reinstalled = AgentPeer { cert_issued_at: 104, ..peer("edge-1") };
        assert_eq!(
            store.record_audit_head(reinstalled, head(1, "e", 105)).await.expect("db"),
            AuditHeadOutcome::Stored
        );
    }

    /// Each case runs on the embedded SQLite database and on a fresh PostgreSQL database:
    /// both backends are held to the same behaviour.
    macro_rules! on_both_backends {
        ($($case:ident),* $(,)?) => {$(
            mod $case {
                #[tokio::test]
                async fn sqlite() {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let store = super::SqliteStore::open(&dir.path().join("cp.db")).expect("open");
                    super::seed(&store).await;
                    super::$case(&store).await;
                }

                #[tokio::test]
                async fn postgres() {
                    let db = crate::store::postgres::testdb::TestDb::new().await;
                    super::seed(&db.store).await;
                    super::$case(&db.store).await;
                    db.drop().await;
                }
            }
        )*};
    }

    on_both_backends!(
        enrolment_token_is_single_use_and_its_failures_are_told_apart,
        the_same_result_twice_is_accepted_once_and_a_different_one_is_refused,
        a_cancel_ends_a_queued_job_and_is_told_to_the_agent_of_a_leased_one,
        an_agent_that_finishes_before_the_cancel_reaches_it_keeps_its_result,
        a_lease_not_completed_in_time_is_handed_out_again,
        an_expired_job_is_never_delivered,
        reading_an_overdue_job_marks_it_expired,
        a_revoked_agent_is_refused_and_its_queued_jobs_fail,
        a_pool_job_goes_to_one_member_and_to_another_when_its_lease_runs_out,
        a_revoked_members_pool_job_goes_back_to_the_pool,
        concurrent_members_never_lease_the_same_job,
        a_job_whose_envelope_cannot_be_read_fails_alone_and_the_others_go_on,
        outstanding_enrolment_tokens_are_listed_and_an_unused_one_can_be_revoked,
        an_agents_audit_head_only_moves_forward_and_a_new_enrolment_starts_it_again,
        a_job_under_a_key_that_cannot_sign_is_not_queued,
        two_different_results_at_once_store_one_and_refuse_the_other,
        polls_and_results_mark_the_agent_seen,
        a_revocation_racing_a_poll_leaves_nothing_leased_to_the_revoked_agent,
    );
}
