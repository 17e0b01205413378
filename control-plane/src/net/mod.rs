//! The network edge: TLS listeners and connections ([`server`]) and the agent listener's
//! handlers ([`agent_api`]). The HTTP plumbing both listeners share is [`crate::http`],
//! a layer below, so that the handlers of every layer can answer with it.

pub mod agent_api;
pub mod server;

#[cfg(test)]
mod clock_tests;
