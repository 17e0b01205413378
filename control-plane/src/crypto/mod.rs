//! Keys and certificates: the CA and the certificates it issues ([`pki`]), the job-signing
//! key ring ([`signing`]), and what is sealed at rest under the results key ([`sealing`]).

pub mod pki;
pub mod sealing;
pub mod signing;
