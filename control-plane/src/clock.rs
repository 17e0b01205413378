//! The control plane's one time source: [`outpost_common::clock::Clock`], shared with the
//! agent (system clock in production, manual in tests).

pub use outpost_common::clock::Clock;
