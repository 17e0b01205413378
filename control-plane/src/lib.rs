//! The Outpost control plane: enrols agents, signs jobs the API asks for, hands them to
//! agents over mutual TLS and keeps their rendered results.
//!
//! Modules, one concern each: [`config`] (control-plane.yaml), [`pki`] (CA, server and
//! agent certificates), [`signing`] (the job-signing key), [`store`] (persistence behind
//! a narrow trait), [`hub`] (wake-ups), [`app`] (the operations), [`api`] (the API
//! listener), [`agent_api`] (the agent listener), [`server`] (TLS and connections).
#![forbid(unsafe_code)]

pub mod agent_api;
pub mod api;
pub mod app;
pub mod config;
pub mod http;
pub mod hub;
pub mod pki;
pub mod server;
pub mod signing;
pub mod store;
