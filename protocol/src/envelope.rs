//! Signed job envelopes.
//!
//! An [`Envelope`] carries the exact JSON bytes of a [`JobSpec`] (base64), the id of the
//! key that signed them and an Ed25519 signature over a domain-separated message:
//!
//! ```text
//! "outpost/job-envelope/v1" 0x00 key_id 0x00 payload-bytes
//! ```
//!
//! The context string keeps a job signature from ever being valid as any other kind of
//! signature, and the key id inside the message stops a signature being re-labelled with
//! another key id. [`Envelope::verify`] checks the signature over the received bytes
//! *before* parsing them, and never re-serialises anything.

use std::collections::BTreeMap;
use std::fmt;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use crate::encoding::{b64_decode, b64_encode, hex};
use crate::job::{JobSpec, PROTOCOL_VERSION};

/// Domain separation for job signatures.
pub const SIGNING_CONTEXT: &[u8] = b"outpost/job-envelope/v1";

/// Largest payload accepted before any work is spent on it (bytes).
pub const MAX_PAYLOAD_LEN: usize = 128 * 1024;

/// A signed job as it travels from the control plane to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Id of the signing key, see [`KeyId`].
    pub key_id: String,
    /// The signed JSON bytes of the job spec, standard base64.
    pub payload: String,
    /// Ed25519 signature (64 bytes), standard base64.
    pub signature: String,
}

/// The id of an Ed25519 public key: `ed25519:` and the first 8 bytes of SHA-256 of the key, hex.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub String);

impl KeyId {
    /// Derives the id of a 32-byte Ed25519 public key.
    pub fn for_public_key(public_key: &[u8]) -> Self {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, public_key);
        KeyId(format!("ed25519:{}", hex(&d.as_ref()[..8])))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job-signing private key. Its `Debug` shows only the key id.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    key_id: KeyId,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// Why a signing key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("not a valid Ed25519 private key (PKCS#8 or 32-byte seed expected)")]
pub struct BadSigningKey;

impl SigningKey {
    /// Generates a new key; returns it with its PKCS#8 v2 encoding for storage.
    pub fn generate() -> Result<(Self, zeroize::Zeroizing<Vec<u8>>), BadSigningKey> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| BadSigningKey)?;
        let pkcs8 = zeroize::Zeroizing::new(doc.as_ref().to_vec());
        Ok((Self::from_pkcs8(&pkcs8)?, pkcs8))
    }

    /// Loads a key from its PKCS#8 encoding.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, BadSigningKey> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| BadSigningKey)?;
        Ok(Self::from_pair(pair))
    }

    /// Loads a key from a raw 32-byte seed (used by the golden-vector generator).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, BadSigningKey> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| BadSigningKey)?;
        Ok(Self::from_pair(pair))
    }

    fn from_pair(pair: Ed25519KeyPair) -> Self {
        let key_id = KeyId::for_public_key(pair.public_key().as_ref());
        Self { pair, key_id }
    }

    /// The key id.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    /// Signs raw payload bytes into an envelope.
    pub fn sign_payload(&self, payload: &[u8]) -> Envelope {
        Envelope {
            key_id: self.key_id.0.clone(),
            payload: b64_encode(payload),
            signature: self.sign_in(SIGNING_CONTEXT, payload),
        }
    }

    /// Signs `payload` under a signing context (see [`signed_message`]); base64 signature.
    pub(crate) fn sign_in(&self, context: &[u8], payload: &[u8]) -> String {
        let sig = self.pair.sign(&signed_message(context, &self.key_id.0, payload));
        b64_encode(sig.as_ref())
    }
}

/// Serialises `spec` once and signs the bytes.
pub fn sign_job(spec: &JobSpec, key: &SigningKey) -> Envelope {
    // Serialising a struct of strings and numbers cannot fail.
    let payload = serde_json::to_vec(spec).unwrap_or_default();
    key.sign_payload(&payload)
}

/// `context 0x00 key_id 0x00 payload`: what every signature of this crate covers.
pub(crate) fn signed_message(context: &[u8], key_id: &str, payload: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(context.len() + key_id.len() + payload.len() + 2);
    msg.extend_from_slice(context);
    msg.push(0);
    msg.extend_from_slice(key_id.as_bytes());
    msg.push(0);
    msg.extend_from_slice(payload);
    msg
}

/// The public keys an agent trusts, by key id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys {
    keys: BTreeMap<String, [u8; 32]>,
}

impl TrustedKeys {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a public key; returns its derived id.
    pub fn insert(&mut self, public_key: [u8; 32]) -> KeyId {
        let id = KeyId::for_public_key(&public_key);
        self.keys.insert(id.0.clone(), public_key);
        id
    }

    /// Adds a base64 public key, checking that `expected_id` (when given) matches it.
    pub fn insert_b64(&mut self, public_key_b64: &str, expected_id: Option<&str>) -> Result<KeyId, BadPublicKey> {
        let raw = b64_decode(public_key_b64).map_err(BadPublicKey::NotBase64)?;
        let key: [u8; 32] = raw.as_slice().try_into().map_err(|_| BadPublicKey::Length { got: raw.len() })?;
        let id = KeyId::for_public_key(&key);
        if let Some(expected) = expected_id {
            if expected != id.0 {
                return Err(BadPublicKey::IdMismatch { expected: expected.to_owned(), actual: id });
            }
        }
        self.keys.insert(id.0.clone(), key);
        Ok(id)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Whether `key_id` is in the set.
    pub fn contains(&self, key_id: &str) -> bool {
        self.keys.contains_key(key_id)
    }

    /// Removes `key_id`; whether it was there.
    pub fn remove(&mut self, key_id: &str) -> bool {
        self.keys.remove(key_id).is_some()
    }

    /// Adds every key of `other`.
    pub fn extend(&mut self, other: &TrustedKeys) {
        self.keys.extend(other.keys.iter().map(|(k, v)| (k.clone(), *v)));
    }

    /// The public key of `key_id`.
    pub(crate) fn get(&self, key_id: &str) -> Option<&[u8; 32]> {
        self.keys.get(key_id)
    }
}

/// What the verifier knows about itself and its clock.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// This agent's enrolled name; a job for anyone else is refused.
    pub audience: String,
    /// The pool this agent was enrolled into: a job whose audience is `pool:<name>` of
    /// this pool is accepted too.
    pub pool: Option<String>,
    /// The verifier's clock, unix seconds.
    pub now: i64,
    /// The longest lifetime (`expires_at - issued_at`) accepted, seconds.
    pub max_lifetime_secs: i64,
    /// Clock-skew allowance applied to `issued_at` and `expires_at`, seconds.
    pub clock_skew_secs: i64,
}

/// Why a public key given as base64 (with its stated id) was not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadPublicKey {
    /// Not base64. The text repeats the decoder's words on purpose: config and enrolment
    /// errors print this error alone.
    #[error("public key is not base64: {0}")]
    NotBase64(#[source] base64::DecodeError),
    /// Not an Ed25519 public key's 32 bytes.
    #[error("public key must be 32 bytes, got {got}")]
    Length {
        /// The bytes decoded.
        got: usize,
    },
    /// The stated key id is not the one derived from the key.
    #[error("key id {expected} does not match the key, whose id is {actual}")]
    IdMismatch {
        /// The id stated beside the key.
        expected: String,
        /// The id derived from it.
        actual: KeyId,
    },
}

/// Every way verification can fail. [`VerifyError::code`] gives a stable short name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The envelope or its payload cannot be decoded or parsed.
    #[error("malformed envelope: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// The key id is not among the trusted keys.
    #[error("job signed by unknown key {key_id}")]
    UnknownKey {
        /// The key id the envelope named.
        key_id: String,
    },
    /// The signature does not verify with the named key.
    #[error("bad signature for key {key_id}")]
    BadSignature {
        /// The key id the envelope named.
        key_id: String,
    },
    /// The payload has a version this build does not understand.
    #[error("unsupported job version {version} (this agent understands {PROTOCOL_VERSION})")]
    UnsupportedVersion {
        /// The version in the payload.
        version: u64,
    },
    /// The job is addressed to someone else.
    #[error("job {job_id} is for agent {audience:?}, not {expected:?}")]
    WrongAudience {
        /// Job id.
        job_id: String,
        /// Audience in the job.
        audience: String,
        /// This agent's name.
        expected: String,
    },
    /// `expires_at` (plus skew) is in the past.
    #[error("job {job_id} expired at {expires_at} (now {now})")]
    Expired {
        /// Job id.
        job_id: String,
        /// Expiry in the job.
        expires_at: i64,
        /// Verifier's clock.
        now: i64,
    },
    /// `issued_at` (minus skew) is in the future.
    #[error("job {job_id} is not valid before {issued_at} (now {now})")]
    NotYetValid {
        /// Job id.
        job_id: String,
        /// Issue time in the job.
        issued_at: i64,
        /// Verifier's clock.
        now: i64,
    },
    /// The job asks for a longer lifetime than policy allows.
    #[error("job {job_id} lives {lifetime_secs}s, longer than the allowed {max_secs}s")]
    LifetimeTooLong {
        /// Job id.
        job_id: String,
        /// `expires_at - issued_at`.
        lifetime_secs: i64,
        /// Policy maximum.
        max_secs: i64,
    },
}

impl VerifyError {
    /// A stable short name for reports, audit records and test vectors.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Malformed { .. } => "malformed",
            VerifyError::UnknownKey { .. } => "unknown_key",
            VerifyError::BadSignature { .. } => "bad_signature",
            VerifyError::UnsupportedVersion { .. } => "unsupported_version",
            VerifyError::WrongAudience { .. } => "wrong_audience",
            VerifyError::Expired { .. } => "expired",
            VerifyError::NotYetValid { .. } => "not_yet_valid",
            VerifyError::LifetimeTooLong { .. } => "lifetime_too_long",
        }
    }
}

/// A job whose envelope verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedJob {
    /// The parsed spec.
    pub spec: JobSpec,
    /// The key that signed it.
    pub key_id: String,
}

#[derive(Deserialize)]
struct VersionProbe {
    version: Option<u64>,
}

impl Envelope {
    /// Parses an envelope from JSON bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, VerifyError> {
        serde_json::from_slice(bytes).map_err(|e| VerifyError::Malformed { reason: e.to_string() })
    }

    /// Best-effort job id for reporting a rejection; never trusted for anything else.
    pub fn unverified_job_id(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct Probe {
            job_id: String,
        }
        let raw = b64_decode(&self.payload).ok()?;
        let p: Probe = serde_json::from_slice(&raw).ok()?;
        crate::ids::is_job_id(&p.job_id).then_some(p.job_id)
    }

    /// Verifies the signature over the received payload bytes, then the payload's version,
    /// shape, audience and lifetime. Checks run cheapest-safe first; the payload is not
    /// parsed before its signature has verified.
    pub fn verify(&self, keys: &TrustedKeys, opts: &VerifyOptions) -> Result<VerifiedJob, VerifyError> {
        let malformed = |reason: String| VerifyError::Malformed { reason };
        if self.payload.len() > MAX_PAYLOAD_LEN * 4 / 3 + 4 {
            return Err(malformed(format!("payload longer than {MAX_PAYLOAD_LEN} bytes")));
        }
        let key = keys.keys.get(&self.key_id).ok_or_else(|| VerifyError::UnknownKey { key_id: self.key_id.clone() })?;
        let payload = b64_decode(&self.payload).map_err(|e| malformed(format!("payload: {e}")))?;
        let signature = b64_decode(&self.signature).map_err(|e| malformed(format!("signature: {e}")))?;
        UnparsedPublicKey::new(&ED25519, key)
            .verify(&signed_message(SIGNING_CONTEXT, &self.key_id, &payload), &signature)
            .map_err(|_| VerifyError::BadSignature { key_id: self.key_id.clone() })?;

        let probe: VersionProbe = serde_json::from_slice(&payload).map_err(|e| malformed(format!("payload: {e}")))?;
        match probe.version {
            Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
            Some(v) => return Err(VerifyError::UnsupportedVersion { version: v }),
            None => return Err(malformed("payload: missing field `version`".into())),
        }
        let spec: JobSpec = serde_json::from_slice(&payload).map_err(|e| malformed(format!("payload: {e}")))?;
        spec.check_shape().map_err(malformed)?;

        let for_pool = opts.pool.as_deref().and_then(|p| crate::job::pool_of(&spec.audience).map(|a| a == p));
        if spec.audience != opts.audience && for_pool != Some(true) {
            return Err(VerifyError::WrongAudience {
                job_id: spec.job_id,
                audience: spec.audience,
                expected: opts.audience.clone(),
            });
        }
        let lifetime = spec.expires_at.saturating_sub(spec.issued_at);
        if lifetime > opts.max_lifetime_secs {
            return Err(VerifyError::LifetimeTooLong {
                job_id: spec.job_id,
                lifetime_secs: lifetime,
                max_secs: opts.max_lifetime_secs,
            });
        }
        if spec.issued_at.saturating_sub(opts.clock_skew_secs) > opts.now {
            return Err(VerifyError::NotYetValid { job_id: spec.job_id, issued_at: spec.issued_at, now: opts.now });
        }
        if spec.expires_at.saturating_add(opts.clock_skew_secs) < opts.now {
            return Err(VerifyError::Expired { job_id: spec.job_id, expires_at: spec.expires_at, now: opts.now });
        }
        Ok(VerifiedJob { spec, key_id: self.key_id.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{CacheSpec, RenderSpec, TableFormat, TableSpec};

    fn spec(now: i64) -> JobSpec {
        JobSpec {
            version: PROTOCOL_VERSION,
            job_id: "7f1c2b9e-0a4d-4c1e-9b7a-3d2f1e0c9b8a".into(),
            audience: "edge-1".into(),
            issued_at: now,
            expires_at: now + 300,
            nonce: "00112233445566778899aabbccddeeff".into(),
            connection: "sample".into(),
            sql: "SELECT 1".into(),
            params: vec![],
            render: RenderSpec::Table(TableSpec { format: TableFormat::Json, max_rows: None }),
            cache: CacheSpec::default(),
            timeout_secs: None,
            requester: None,
        }
    }

    fn opts(now: i64) -> VerifyOptions {
        VerifyOptions { audience: "edge-1".into(), pool: None, now, max_lifetime_secs: 600, clock_skew_secs: 60 }
    }

    fn key() -> SigningKey {
        SigningKey::from_seed(&[7u8; 32]).unwrap_or_else(|_| unreachable!("fixed seed is valid"))
    }

    #[test]
    fn verifies_a_job_signed_by_a_trusted_key() {
        let k = key();
        let mut keys = TrustedKeys::new();
        keys.insert(k.public_key());
        let env = sign_job(&spec(1000), &k);
        let got = env.verify(&keys, &opts(1000));
        assert_eq!(got.map(|j| j.spec), Ok(spec(1000)));
    }

    #[test]
    fn a_pool_job_is_accepted_by_a_member_of_that_pool_only() {
        let k = key();
        let mut keys = TrustedKeys::new();
        keys.insert(k.public_key());
        let env = sign_job(&JobSpec { audience: "pool:eu".into(), ..spec(1000) }, &k);
        let member = VerifyOptions { pool: Some("eu".into()), ..opts(1000) };
        assert!(env.verify(&keys, &member).is_ok());
        for (pool, who) in [(None, "not in a pool"), (Some("us"), "in another pool")] {
            let got = env.verify(&keys, &VerifyOptions { pool: pool.map(str::to_owned), ..opts(1000) });
            assert!(matches!(got, Err(VerifyError::WrongAudience { .. })), "an agent {who}: {got:?}");
        }
        // A member's own name is still its audience.
        assert!(sign_job(&spec(1000), &k).verify(&keys, &member).is_ok());
    }

    #[test]
    fn rejects_a_relabelled_key_id_as_unknown_or_bad_signature() {
        let k = key();
        let other = SigningKey::from_seed(&[9u8; 32]).unwrap_or_else(|_| unreachable!());
        let mut keys = TrustedKeys::new();
        keys.insert(k.public_key());
        keys.insert(other.public_key());
        let mut env = sign_job(&spec(1000), &k);
        env.key_id = other.key_id().0.clone();
        assert_eq!(
            env.verify(&keys, &opts(1000)).map(|_| ()),
            Err(VerifyError::BadSignature { key_id: other.key_id().0.clone() })
        );
    }

    #[test]
    fn skew_allowance_applies_at_both_ends() {
        let k = key();
        let mut keys = TrustedKeys::new();
        keys.insert(k.public_key());
        let env = sign_job(&spec(1000), &k);
        assert!(env.verify(&keys, &opts(940)).is_ok());
        assert_eq!(env.verify(&keys, &opts(939)).map_err(|e| e.code()).err(), Some("not_yet_valid"));
        assert!(env.verify(&keys, &opts(1360)).is_ok());
        assert_eq!(env.verify(&keys, &opts(1361)).map_err(|e| e.code()).err(), Some("expired"));
    }

    #[test]
    fn signing_key_debug_hides_the_secret() {
        let dbg = format!("{:?}", key());
        assert!(dbg.contains("ed25519:"), "{dbg}");
        assert!(!dbg.contains("0707"), "{dbg}");
    }

    /// A configured or enrolled key that cannot be trusted says why, in words an
    /// operator can act on.
    #[test]
    fn a_bad_public_key_says_why() {
        let (key, _) = SigningKey::generate().expect("key");
        let public = b64_encode(&key.public_key());
        let mut keys = TrustedKeys::new();
        let id = keys.insert_b64(&public, None).expect("good key");
        assert!(keys.contains(&id.0));
        assert!(matches!(keys.insert_b64("*", None), Err(BadPublicKey::NotBase64(_))));
        assert_eq!(
            keys.insert_b64(&b64_encode(&[1, 2, 3]), None).expect_err("short").to_string(),
            "public key must be 32 bytes, got 3"
        );
        assert_eq!(
            keys.insert_b64(&public, Some("other")).expect_err("wrong id").to_string(),
            format!("key id other does not match the key, whose id is {id}")
        );
    }
}
