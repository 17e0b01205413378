//! The commands of `outpost-control-plane`, one file per group; `main.rs` parses the
//! command line and calls them.

pub(crate) mod agents;
pub(crate) mod config;
pub(crate) mod enrolment;
pub(crate) mod init;
pub(crate) mod serve;
pub(crate) mod server_cert;
pub(crate) mod signing_keys;
pub(crate) mod support;
pub(crate) mod tokens;
pub(crate) mod users;
