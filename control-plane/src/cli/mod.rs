//! The commands of `outpost-control-plane`, one file per group; `main.rs` parses the
//! command line and calls them.

pub(crate) mod serve;
pub(crate) mod signing_keys;
pub(crate) mod support;
pub(crate) mod tokens;
pub(crate) mod users;
