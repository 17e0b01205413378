//! Outpost wire protocol.
//!
//! This crate owns every type that crosses the network between the agent and the
//! control plane, and the one place where job envelopes are signed and verified:
//!
//! - [`job::JobSpec`]: what a job asks for (versioned, with audience, lifetime and nonce);
//! - [`envelope::Envelope`]: the exact payload bytes, a key id and an Ed25519 signature
//!   over a domain-separated message. Verification never re-serialises the payload;
//! - [`report::ResultReport`]: what the agent sends back (rendered bytes only);
//! - [`enrol`]: the one-string enrolment token and the enrolment exchange;
//! - [`keyset`]: signed key-set statements, how agents learn rotated job-signing keys;
//! - [`catalog`]: the JSON answer of a catalog job (the schema browser's tables and columns);
//! - [`wire`]: the small request/response bodies of the agent endpoints;
//! - [`schema`]: OpenAPI schemas of the render spec, parameters and cache instructions.
//!
//! It refuses anything it cannot parse with a typed error and never panics on input.
#![forbid(unsafe_code)]

pub mod audit_head;
pub mod catalog;
pub mod encoding;
pub mod enrol;
pub mod envelope;
pub mod ids;
pub mod job;
pub mod keyset;
pub mod report;
pub mod schema;
pub mod wire;

pub use envelope::{
    sign_job, BadPublicKey, Envelope, KeyId, SigningKey, TrustedKeys, VerifiedJob, VerifyError, VerifyOptions,
};
pub use job::{
    BarSpec, CacheSpec, CatalogSpec, ColumnRole, JobSpec, NumberFormat, Param, PieSpec, RenderSpec, Requester,
    ScalarSpec, TableFormat, TableSpec, XySpec, PROTOCOL_VERSION, RENDER_KINDS,
};
pub use report::{EgressAction, EgressDecision, JobOutcome, Reason, ReportError, ResultReport, ResultStats};

/// Current time as unix seconds. The only clock in this crate; callers pass `now`
/// explicitly everywhere else so that tests can fix it.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
