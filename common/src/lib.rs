//! Mechanisms shared by the Outpost agent and control plane, with no product logic:
//! files that hold secrets ([`fsutil`]), YAML config files read strictly with errors
//! that name the file, line and field ([`yamlcfg`]), and logging and signals of the
//! binaries ([`process`]), systemd notifications ([`sdnotify`]), jittered retries
//! ([`backoff`]), the clock tests control ([`clock`]) and SQLite WAL checkpoints on a
//! thread of their own ([`sqlite_checkpoints`]).
#![forbid(unsafe_code)]

pub mod backoff;
pub mod clock;
pub mod fsutil;
pub mod process;
pub mod sdnotify;
pub mod sqlite_checkpoints;
pub mod yamlcfg;
