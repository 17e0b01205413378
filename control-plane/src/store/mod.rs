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
//! [`SqliteStore`] is the embedded backend (WAL); [`postgres::PgStore`] serves several
//! replicas and implements the same traits. Every method is one transaction, so a crash
//! between two calls leaves a consistent state.
//!
//! - This file: the [`Store`] trait (agents, enrolment tokens, jobs, keys); the records it
//!   takes and returns are in `records`, its errors in `error`, and what both backends
//!   decide the same way in `rules`.
//! - [`access`]: the second trait, users, groups, shares, sessions, API tokens, projects
//!   and the control plane's audit log, with its records and both implementations.
//! - `sqlite` and [`postgres`]: the two backends, one file per topic, each call answered
//!   as `dispatch` lists; [`backend`]: the one in use, chosen by control-plane.yaml.
//! - `migrations`: the numbered schema files of each backend, in the order they apply.
//! - [`queue`]: leases that skip a job whose stored envelope cannot be read.
//! - Tests: `contract_tests` (and `access::contract_tests`) run every scenario on both
//!   backends through `testdb`'s one macro and test databases.

pub mod access;
pub mod backend;
mod dispatch;
mod error;
mod migrations;
pub mod postgres;
pub mod queue;
mod records;
mod rules;
mod sqlite;
mod transitions;

use std::future::Future;

use outpost_protocol::ResultReport;

pub use error::{AccessRefusal, DatabaseKind, RedeemError, StoreError};
pub(crate) use postgres::PgStore;
pub use records::{
    AgentPeer, AgentRecord, AuditHeadOutcome, CancelOutcome, CompleteOutcome, EnrolTokenRecord, Enrolled, JobFilter,
    JobOrigin, JobRecord, JobState, KeySetChange, LeaseBatch, LeasedJob, NewJob, SigningKeyRecord, StoredAuditHead,
};
pub(crate) use rules::{behind_or_not_admitted, check_redeem, enrolment_time, jobs_filter_sql, CANCEL_RESEND_SECS};
pub use sqlite::SqliteStore;

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
    /// Checks and consumes a token in one transaction; on success the agent is recorded,
    /// in the token's pool, enrolled at [`Enrolled::enrolled_at`] (later than any earlier
    /// enrolment of the name: see `rules::enrolment_time`) with a certificate of
    /// `cert_lifetime_secs` from then.
    fn redeem_enrol_token(
        &self,
        id: String,
        secret_sha256: String,
        agent: String,
        now: i64,
        cert_lifetime_secs: i64,
    ) -> impl Future<Output = Result<Result<Enrolled, RedeemError>, StoreError>> + Send;
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
    /// Queues a job; refuses it (`KeyRetired`) unless its signing key is the active one.
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

#[cfg(test)]
pub(crate) mod contract_tests;
#[cfg(any(test, feature = "test-support"))]
pub mod testdb;
