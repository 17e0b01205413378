//! The commands of `outpost-agent` other than `run` and `enroll`, one file per group;
//! `main.rs` parses the command line and calls them.

pub(crate) mod audit;
pub(crate) mod cache;
pub(crate) mod connections;
pub(crate) mod credentials;
pub(crate) mod service;
