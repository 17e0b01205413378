//! The network edge: TLS listeners and connections ([`server`]), the agent listener's
//! handlers ([`agent_api`]), and HTTP responses and errors shared by both listeners
//! ([`http`]).

pub mod agent_api;
pub mod http;
pub mod server;
