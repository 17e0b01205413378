#![forbid(unsafe_code)]
pub mod resultset;
