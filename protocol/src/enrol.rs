//! Enrolment: the one-string token and the request/response of the enrolment endpoint.
//!
//! The token carries everything an agent needs to enrol safely: where to dial, which
//! agent name it is bound to, a one-time secret, and the SHA-256 pin of the control
//! plane's CA certificate (as kubeadm's discovery hash), so that the agent trusts the
//! control plane without trust-on-first-use. Its `Debug` never prints the secret.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::encoding::{b64url_decode, b64url_encode};

/// Prefix of every enrolment token.
pub const TOKEN_PREFIX: &str = "outpost-enrol1.";

/// A decoded enrolment token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct EnrolmentToken {
    /// `host:port` of the control plane's agent listener.
    pub addr: String,
    /// Name the control plane's certificate is issued for.
    pub server_name: String,
    /// The agent name the token is bound to.
    pub agent: String,
    /// Public id of the token (the control plane looks it up by this).
    pub id: String,
    /// The one-time secret (only its hash is stored by the control plane).
    pub secret: String,
    /// SHA-256 of the control plane's CA certificate (DER), hex.
    pub ca_sha256: String,
}

impl fmt::Debug for EnrolmentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrolmentToken")
            .field("addr", &self.addr)
            .field("server_name", &self.server_name)
            .field("agent", &self.agent)
            .field("id", &self.id)
            .field("secret", &"[REDACTED]")
            .field("ca_sha256", &self.ca_sha256)
            .finish()
    }
}

/// Why a token string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenFormatError {
    /// Does not start with the expected prefix.
    #[error("not an Outpost enrolment token (it should start with {TOKEN_PREFIX:?})")]
    WrongPrefix,
    /// The body is not valid, e.g. a character was changed or lost in copying.
    #[error("the enrolment token is damaged or was altered ({0}); copy it again from `outpost-control-plane enrollment-token create`")]
    Damaged(String),
}

impl EnrolmentToken {
    /// Encodes the token as one copy-pasteable string.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{TOKEN_PREFIX}{}", b64url_encode(&json))
    }

    /// Decodes a token string.
    pub fn decode(text: &str) -> Result<Self, TokenFormatError> {
        let body = text.trim().strip_prefix(TOKEN_PREFIX).ok_or(TokenFormatError::WrongPrefix)?;
        let json = zeroize::Zeroizing::new(b64url_decode(body).map_err(|e| TokenFormatError::Damaged(e.to_string()))?);
        let tok: Self = serde_json::from_slice(&json).map_err(|e| TokenFormatError::Damaged(e.to_string()))?;
        if tok.ca_sha256.len() != 64 || !tok.ca_sha256.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(TokenFormatError::Damaged("CA pin is not a SHA-256 hex digest".into()));
        }
        if crate::job::validate_name(&tok.agent).is_err() {
            return Err(TokenFormatError::Damaged("agent name is invalid".into()));
        }
        Ok(tok)
    }
}

/// Body of `POST /v1/enroll`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// Token id.
    pub token_id: String,
    /// Token secret.
    pub secret: String,
    /// Agent name the caller believes the token is for.
    pub agent: String,
    /// PKCS#10 certificate signing request, PEM. The private key never leaves the agent.
    pub csr_pem: String,
}

impl fmt::Debug for EnrolRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrolRequest")
            .field("token_id", &self.token_id)
            .field("secret", &"[REDACTED]")
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

impl Drop for EnrolRequest {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

/// A job-signing public key as published to agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedKey {
    /// Key id, see [`crate::KeyId`].
    pub key_id: String,
    /// 32-byte Ed25519 public key, standard base64.
    pub public_key: String,
}

/// Answer of a successful enrolment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolResponse {
    /// The enrolled agent name.
    pub agent: String,
    /// The agent's client certificate, PEM.
    pub certificate_pem: String,
    /// The control plane's CA certificate, PEM.
    pub ca_pem: String,
    /// Job-signing public keys the agent should trust (every key of the current key set).
    pub signing_keys: Vec<PublishedKey>,
    /// Version of the key set those keys come from; later statements build on it.
    #[serde(default)]
    pub key_set_version: u64,
    /// Certificate expiry, unix seconds.
    pub not_after: i64,
    /// The pool the agent joined: it also accepts jobs whose audience is `pool:<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> EnrolmentToken {
        EnrolmentToken {
            addr: "127.0.0.1:7443".into(),
            server_name: "localhost".into(),
            agent: "edge-1".into(),
            id: "t1".into(),
            secret: "s3cr3t-canary".into(),
            ca_sha256: "ab".repeat(32),
        }
    }

    #[test]
    fn token_round_trips_and_debug_redacts_secret() {
        let t = token();
        assert_eq!(EnrolmentToken::decode(&t.encode()), Ok(t.clone()));
        assert!(!format!("{t:?}").contains("canary"));
    }

    #[test]
    fn altered_token_is_reported_as_damaged() {
        let mut s = token().encode();
        s.truncate(s.len() - 3);
        assert!(matches!(EnrolmentToken::decode(&s), Err(TokenFormatError::Damaged(_))));
        assert_eq!(EnrolmentToken::decode("hello"), Err(TokenFormatError::WrongPrefix));
    }
}
