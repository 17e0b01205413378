//! Embed tokens: short-lived JWTs that let an external page read the rendered results of
//! one project for one end customer, and nothing else.
//!
//! Signed with EdDSA (Ed25519) by a key of their own (`embed-signing.key`, 0600), not the
//! job-signing key: a leaked embed key cannot sign jobs, and agents never trust it.
//! Verification pins the algorithm: the header must say `EdDSA` with our key id, so `none`,
//! `HS256` keyed with the public key and every other algorithm are refused before any
//! signature is checked. A token carries its project's embed epoch; revoking a project's
//! tokens bumps the epoch.

use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use outpost_common::fsutil;
use outpost_protocol::encoding::{b64url_decode, b64url_encode, hex, sha256_hex};
use serde::{Deserialize, Serialize};

/// File name of the embed signing key in the data dir.
pub const EMBED_KEY_FILE: &str = "embed-signing.key";
/// Issuer claim.
pub const ISSUER: &str = "outpost-control-plane";
/// Audience claim.
pub const AUDIENCE: &str = "outpost-embed";
/// The one algorithm accepted.
pub const ALG: &str = "EdDSA";
/// Longest token accepted, bytes.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Clock skew allowed on `iat`, seconds.
const SKEW_SECS: i64 = 30;

/// Failures of the embed key.
#[derive(Debug, thiserror::Error)]
pub enum EmbedKeyError {
    /// The key file.
    #[error(transparent)]
    File(#[from] fsutil::FileError),
    /// Not an Ed25519 PKCS#8 key.
    #[error("{0}: not an Ed25519 PKCS#8 private key")]
    BadKey(PathBuf),
}

/// The JOSE header we write and the only one we accept.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    kid: String,
}

/// What an embed token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The end customer id.
    pub sub: String,
    /// Project id.
    pub prj: String,
    /// The project's embed epoch when issued.
    pub ver: i64,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Expires at, unix seconds.
    pub exp: i64,
    /// Token id (for the audit log).
    pub jti: String,
    /// Dashboard filters fixed by the embedding app (values by parameter name, checked
    /// when the token was made); the others take their default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flt: Option<serde_json::Map<String, serde_json::Value>>,
    /// Dashboard filters the embed's viewer may change (parameter names, none of them
    /// fixed in `flt`); the others are fixed or take their default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vfl: Option<Vec<String>>,
}

/// Why an embed token was refused (said to the client in one line; details in the log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbedError {
    /// Not three base64url parts of sane size.
    #[error("malformed embed token")]
    Malformed,
    /// The header names another algorithm or key.
    #[error("embed token algorithm or key not accepted (only {ALG} with this control plane's key)")]
    Algorithm,
    /// The signature does not verify.
    #[error("embed token signature is invalid")]
    Signature,
    /// Wrong issuer or audience.
    #[error("embed token is not for this service")]
    Audience,
    /// Past `exp`, or issued in the future.
    #[error("embed token has expired")]
    Expired,
    /// Lifetime longer than the policy allows.
    #[error("embed token lifetime exceeds the allowed maximum")]
    TooLong,
}

/// The embed signing key. `Debug` shows only its id.
pub struct EmbedKey {
    pair: Ed25519KeyPair,
    kid: String,
}

impl std::fmt::Debug for EmbedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl EmbedKey {
    /// Loads `embed-signing.key` from `data_dir`, creating it if absent. Returns the key and
    /// whether it was created now.
    pub fn load_or_create(data_dir: &Path) -> Result<(Self, bool), EmbedKeyError> {
        let path = data_dir.join(EMBED_KEY_FILE);
        let created = if path.exists() {
            false
        } else {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| EmbedKeyError::BadKey(path.clone()))?;
            fsutil::write_private(&path, doc.as_ref())?;
            true
        };
        let pkcs8 = zeroize::Zeroizing::new(fsutil::read_private(&path, 4096)?);
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| EmbedKeyError::BadKey(path.clone()))?;
        let kid = format!("embed:{}", &sha256_hex(pair.public_key().as_ref())[..16]);
        Ok((Self { pair, kid }, created))
    }

    /// The key id written into tokens.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs a token for `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let header = Header { alg: ALG.into(), typ: Some("JWT".into()), kid: self.kid.clone() };
        let h = b64url_encode(&serde_json::to_vec(&header).unwrap_or_default());
        let c = b64url_encode(&serde_json::to_vec(claims).unwrap_or_default());
        let signing_input = format!("{h}.{c}");
        let sig = self.pair.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", b64url_encode(sig.as_ref()))
    }

    /// Verifies a token: algorithm and key pinned, signature, issuer, audience, expiry and
    /// lifetime cap. The project's epoch is the caller's to check.
    pub fn verify(&self, token: &str, now: i64, max_ttl_secs: i64) -> Result<Claims, EmbedError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(EmbedError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(EmbedError::Malformed);
        };
        let header: Header =
            b64url_decode(h).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or(EmbedError::Malformed)?;
        if header.alg != ALG || header.kid != self.kid || header.typ.as_deref().is_some_and(|t| t != "JWT") {
            return Err(EmbedError::Algorithm);
        }
        let sig = b64url_decode(s).map_err(|_| EmbedError::Malformed)?;
        let public = UnparsedPublicKey::new(&signature::ED25519, self.pair.public_key().as_ref());
        public.verify(format!("{h}.{c}").as_bytes(), &sig).map_err(|_| EmbedError::Signature)?;
        let claims: Claims =
            b64url_decode(c).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or(EmbedError::Malformed)?;
        if claims.iss != ISSUER || claims.aud != AUDIENCE {
            return Err(EmbedError::Audience);
        }
        if claims.exp <= now || claims.iat > now + SKEW_SECS {
            return Err(EmbedError::Expired);
        }
        if claims.exp - claims.iat > max_ttl_secs {
            return Err(EmbedError::TooLong);
        }
        Ok(claims)
    }
}

/// A new token id.
pub fn new_jti() -> String {
    hex(&outpost_protocol::ids::random_bytes::<12>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64) -> Claims {
        Claims {
            flt: None,
            vfl: None,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: "acme".into(),
            prj: "p1".into(),
            ver: 0,
            iat: now,
            exp: now + 900,
            jti: new_jti(),
        }
    }

    fn forge(header: &str, claims: &Claims, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            b64url_encode(header.as_bytes()),
            b64url_encode(&serde_json::to_vec(claims).expect("json")),
            b64url_encode(sig)
        )
    }

    #[test]
    fn only_our_eddsa_signature_with_our_key_id_is_accepted() {
        let dir = tempfile::tempdir().expect("dir");
        let (key, created) = EmbedKey::load_or_create(dir.path()).expect("key");
        assert!(created);
        let now = 1_800_000_000;
        let c = claims(now);
        let token = key.sign(&c);
        assert_eq!(key.verify(&token, now + 1, 3600), Ok(c.clone()));
        // alg none, with and without a signature part.
        let none = forge(&format!(r#"{{"alg":"none","kid":"{}"}}"#, key.kid()), &c, b"");
        assert_eq!(key.verify(&none, now, 3600), Err(EmbedError::Algorithm));
        // Algorithm confusion: HS256 "keyed" with the public key.
        let hs = forge(&format!(r#"{{"alg":"HS256","kid":"{}"}}"#, key.kid()), &c, &[0u8; 32]);
        assert_eq!(key.verify(&hs, now, 3600), Err(EmbedError::Algorithm));
        // Another key id, and an unknown header field (e.g. jku pointing elsewhere).
        let other = forge(r#"{"alg":"EdDSA","kid":"embed:0000"}"#, &c, &[0u8; 64]);
        assert_eq!(key.verify(&other, now, 3600), Err(EmbedError::Algorithm));
        let jku = forge(&format!(r#"{{"alg":"EdDSA","kid":"{}","jku":"https://evil"}}"#, key.kid()), &c, &[0u8; 64]);
        assert_eq!(key.verify(&jku, now, 3600), Err(EmbedError::Malformed));
        // Tampered claims keep the old signature.
        let parts: Vec<&str> = token.split('.').collect();
        let mut evil = c.clone();
        evil.prj = "p2".into();
        let tampered =
            format!("{}.{}.{}", parts[0], b64url_encode(&serde_json::to_vec(&evil).expect("json")), parts[2]);
        assert_eq!(key.verify(&tampered, now, 3600), Err(EmbedError::Signature));
        // Expired, and too long a lifetime.
        assert_eq!(key.verify(&token, now + 900, 3600), Err(EmbedError::Expired));
        assert_eq!(key.verify(&token, now, 600), Err(EmbedError::TooLong));
        // Another control plane's key.
        let dir2 = tempfile::tempdir().expect("dir");
        let (stranger, _) = EmbedKey::load_or_create(dir2.path()).expect("key");
        assert_eq!(stranger.verify(&token, now, 3600), Err(EmbedError::Algorithm));
        assert_eq!(key.verify("a.b", now, 3600), Err(EmbedError::Malformed));
        let (again, created) = EmbedKey::load_or_create(dir.path()).expect("reload");
        assert!(!created);
        assert_eq!(again.kid(), key.kid());
    }
}
