//! Mechanisms shared by the Outpost agent and control plane, with no product logic:
//! files that hold secrets ([`fsutil`]) and YAML config files read strictly with errors
//! that name the file, line and field ([`yamlcfg`]).
#![forbid(unsafe_code)]

pub mod fsutil;
pub mod yamlcfg;
