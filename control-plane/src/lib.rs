//! The Outpost control plane: enrols agents, signs jobs the API asks for, hands them to
//! agents over mutual TLS and keeps their rendered results.
//!
//! Modules, one concern each: [`config`] (control-plane.yaml), [`pki`] (CA, server and
//! agent certificates), [`signing`] (the job-signing key), [`store`] (persistence behind
//! a narrow trait), [`hub`] (wake-ups), [`queue`] (leases that skip
//! damaged rows), [`app`] (the operations), [`api`] (the API
//! listener: routes, authentication, audit), [`api_routes`], [`api_access`] and
//! [`api_projects`] (its handlers), [`access`] (roles, scopes, grants, passwords) and
//! [`access_store`] (their persistence), [`sealing`] (results encrypted at rest), [`redact`] (failure
//! text kept from callers who may not read the SQL),
//! [`embed`] (embed tokens), [`enrolment`] (enrolment's
//! audit records, token list and revocation, throttle), [`openapi`] (the API's description), [`agent_api`] (the
//! agent listener), [`audit_heads`] (the agents' signed audit-log heads), [`server`] (TLS and connections).
#![forbid(unsafe_code)]

pub mod access;
pub mod access_store;
mod access_store_pg;
pub mod agent_api;
pub mod api;
pub mod api_access;
pub mod api_projects;
pub mod api_routes;
pub mod app;
pub mod audit_heads;
pub mod backend;
pub mod config;
pub mod console;
pub mod embed;
pub mod enrolment;
pub mod http;
pub mod hub;
pub mod oidc;
pub mod openapi;
pub mod password_work;
pub mod pg;
pub mod pki;
pub mod queue;
pub mod redact;
pub mod sealing;
pub mod server;
pub mod signing;
pub mod store;
pub mod svg;
