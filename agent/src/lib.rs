//! The Outpost agent: runs signed jobs against the customer's databases and sends back
//! only rendered results.
//!
//! Modules, one concern each: [`config`] (agent.yaml), [`identity`] (key, certificates,
//! enrolment record), [`enrol`] (token for certificate), [`transport`] (mutual TLS to the
//! control plane), [`daemon`] (start-up, the loops drained at shutdown, and the job
//! pipeline: verify, run, render, audit, report; also reachable as `runner`),
//! [`connectors`] (read-only database access), [`resultset`] (rows in memory only),
//! [`render`] (the only bytes that leave), [`scrub`] (what of a failure's error text leaves),
//! [`replay`] (jobs already accepted), [`audit`] (the local audit log),
//! [`backoff`] (jittered retries).
#![forbid(unsafe_code)]

pub mod audit;
pub use outpost_common::backoff;
pub mod cache;
pub mod config;
pub mod config_audit;
pub mod connectors;
pub mod control;
pub mod daemon;
pub mod enrol;
pub mod health;
pub mod identity;
pub mod keys;
pub mod metrics;
pub mod policy;
pub mod provenance;
pub mod proxy;
pub mod render;
pub mod replay;
pub mod resultset;
/// The daemon under its former name, so that `outpost_agent::runner::…` paths keep working.
pub use daemon as runner;
pub mod scrub;
pub mod service;
pub mod transport;
pub mod vault;
