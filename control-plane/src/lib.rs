//! The Outpost control plane: enrols agents, signs jobs the API asks for, hands them to
//! agents over mutual TLS and keeps their rendered results.
//!
//! The folders are the layers, lowest first:
//! - [`crypto`]: the CA and certificates ([`crypto::pki`]), the job-signing keys
//!   ([`crypto::signing`]), results and job envelopes sealed at rest ([`crypto::sealing`]).
//! - [`store`]: persistence behind narrow traits — jobs, agents, keys ([`store`]), users,
//!   tokens, grants, projects ([`store::access`]), on SQLite or PostgreSQL
//!   ([`store::postgres`], [`store::access_postgres`]) chosen by [`store::backend`].
//! - [`auth`]: roles, scopes and passwords ([`auth::access`]), bounded password hashing
//!   ([`auth::password_work`]), single sign-on ([`auth::oidc`]), embed tokens ([`auth::embed`]).
//! - The operations: [`config`] (control-plane.yaml), [`app`] (the running control plane and
//!   its operations), [`hub`] (wake-ups), [`queue`] (leases that skip damaged rows),
//!   [`enrolment`] (its audit records, token list and revocation, throttle), [`audit_heads`]
//!   (the agents' signed audit-log heads), [`redact`] (failure text kept from callers who
//!   may not read the SQL).
//! - [`api`]: the API — route table, authentication and audit ([`api`]), handlers for jobs
//!   and agents ([`api::jobs`]), users, tokens and shares ([`api::access`]), projects
//!   ([`api::projects`]), and its description ([`api::openapi`]); [`console`]: the web
//!   console's pages and its SVG sanitiser ([`console::sanitize_svg`]).
//! - [`net`]: TLS listeners and connections ([`net::server`]), the agent listener's
//!   handlers ([`net::agent_api`]), HTTP responses and errors ([`net::http`]).
//!
//! (Issue 22 moves the remaining upward imports out: `app` still holds the sign-in
//! throttle and OIDC client, and `store` and `store::access` use each other.)
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod audit_heads;
pub mod auth;
pub mod config;
pub mod console;
pub mod crypto;
pub mod enrolment;
pub mod hub;
pub mod net;
pub mod queue;
pub mod redact;
pub mod store;
