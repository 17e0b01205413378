//! Who may do what: roles, scopes, grants and password hashes ([`access`]), password
//! hashing bounded under a flood ([`password_work`]), the sign-in throttle ([`throttle`]),
//! single sign-on ([`oidc`]) and embed tokens ([`embed`]).

pub mod access;
pub mod embed;
pub mod oidc;
pub mod password_work;
pub mod throttle;
