//! Who may do what: roles, scopes, grants and password hashes ([`access`]), password
//! hashing bounded under a flood ([`password_work`]), the sign-in throttle ([`throttle`]),
//! single sign-on ([`oidc`]), embed tokens ([`embed`]) and why a check or a name was
//! refused ([`refusals`]).

pub mod access;
pub mod embed;
pub mod oidc;
pub mod password_work;
pub mod refusals;
pub mod throttle;
