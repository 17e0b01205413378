//! Signed key-set statements: how an agent learns the control plane's job-signing keys
//! after enrolment.
//!
//! A [`SignedKeySet`] carries the exact JSON bytes of a [`KeySet`] (base64) and one
//! Ed25519 signature per key of the set, each over a domain-separated message:
//!
//! ```text
//! "outpost/key-set/v1" 0x00 key_id 0x00 payload-bytes
//! ```
//!
//! An agent accepts a statement only if at least one signature is by a key it already
//! trusts and every signature by a key it trusts is valid, and only if the version is
//! higher than the one it holds (no rollback). The statement then replaces the keys the
//! agent had learned; keys pinned in the agent's own config are not touched by it.
//! Because every statement is signed by all of its keys, and a rotation keeps the old
//! key in the set until it is retired, an agent that was offline walks the versions in
//! order and reaches the current set through a chain of signatures.

use serde::{Deserialize, Serialize};

use crate::encoding::{b64_decode, b64_encode};
use crate::envelope::{signed_message, SigningKey, TrustedKeys};

/// Domain separation for key-set signatures.
pub const KEYSET_CONTEXT: &[u8] = b"outpost/key-set/v1";
/// Largest payload accepted (bytes).
pub const MAX_KEYSET_PAYLOAD: usize = 16 * 1024;
/// Most keys in one set.
pub const MAX_KEYS: usize = 16;

/// What a key in the set is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Signs new jobs.
    Active,
    /// Published ahead of use; will sign jobs after the next rotation.
    Next,
    /// Signed jobs before the last rotation; still accepted until it is retired.
    Previous,
}

impl KeyStatus {
    /// The status's name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Next => "next",
            KeyStatus::Previous => "previous",
        }
    }
}

/// One key of a set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySetEntry {
    /// Key id, see [`crate::KeyId`].
    pub key_id: String,
    /// 32-byte Ed25519 public key, standard base64.
    pub public_key: String,
    /// Its role.
    pub status: KeyStatus,
}

/// The statement's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySet {
    /// Increases by one with every change; an agent never goes back.
    pub version: u64,
    /// Unix seconds.
    pub issued_at: i64,
    /// Every key an agent should accept job signatures from, exactly one of them active.
    pub keys: Vec<KeySetEntry>,
}

/// One signature of a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySetSignature {
    /// The signing key's id.
    pub key_id: String,
    /// Ed25519 signature, standard base64.
    pub signature: String,
}

/// A key set as it travels: the exact payload bytes and the signatures over them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedKeySet {
    /// JSON of a [`KeySet`], standard base64.
    pub payload: String,
    /// One per signing key.
    pub signatures: Vec<KeySetSignature>,
}

/// Why a statement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    /// Not decodable or not a valid set.
    #[error("malformed key set: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// No signature by a key the verifier trusts.
    #[error("key set is not signed by any trusted key (signed by: {signed_by})")]
    NoTrustedSignature {
        /// Key ids that did sign.
        signed_by: String,
    },
    /// A signature by a trusted key does not verify.
    #[error("key set signature by {key_id} does not verify")]
    BadSignature {
        /// The key id.
        key_id: String,
    },
    /// Not newer than what the verifier holds.
    #[error("key set version {version} is not newer than the held version {held}; refusing to go back")]
    Rollback {
        /// Offered version.
        version: u64,
        /// Held version.
        held: u64,
    },
}

impl KeySetError {
    /// Stable short name for audit records.
    pub fn code(&self) -> &'static str {
        match self {
            KeySetError::Malformed { .. } => "malformed",
            KeySetError::NoTrustedSignature { .. } => "untrusted",
            KeySetError::BadSignature { .. } => "bad_signature",
            KeySetError::Rollback { .. } => "rollback",
        }
    }
}

/// A statement that passed [`SignedKeySet::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedKeySet {
    /// Its content.
    pub set: KeySet,
    /// Its keys, ready for verifying jobs.
    pub keys: TrustedKeys,
    /// The trusted keys whose signatures verified.
    pub signed_by: Vec<String>,
}

impl KeySet {
    /// Checks the set's shape: at least one key, at most [`MAX_KEYS`], exactly one active,
    /// ids that match their keys, no duplicates. Returns the keys.
    pub fn check(&self) -> Result<TrustedKeys, KeySetError> {
        let bad = |reason: String| KeySetError::Malformed { reason };
        if self.version == 0 {
            return Err(bad("version must be at least 1".into()));
        }
        if self.keys.is_empty() || self.keys.len() > MAX_KEYS {
            return Err(bad(format!("a key set holds 1 to {MAX_KEYS} keys, this one {}", self.keys.len())));
        }
        let active = self.keys.iter().filter(|k| k.status == KeyStatus::Active).count();
        if active != 1 {
            return Err(bad(format!("a key set has exactly one active key, this one {active}")));
        }
        let mut keys = TrustedKeys::new();
        for (i, k) in self.keys.iter().enumerate() {
            if keys.contains(&k.key_id) {
                return Err(bad(format!("keys[{i}]: {} appears twice", k.key_id)));
            }
            keys.insert_b64(&k.public_key, Some(&k.key_id)).map_err(|m| bad(format!("keys[{i}]: {m}")))?;
        }
        Ok(keys)
    }

    /// The active key's id.
    pub fn active(&self) -> Option<&str> {
        self.keys.iter().find(|k| k.status == KeyStatus::Active).map(|k| k.key_id.as_str())
    }

    /// Serialises once and signs the bytes with every key in `signers`.
    pub fn sign(&self, signers: &[&SigningKey]) -> SignedKeySet {
        // Serialising a struct of strings and numbers cannot fail.
        let payload = serde_json::to_vec(self).unwrap_or_default();
        let signatures = signers
            .iter()
            .map(|k| KeySetSignature { key_id: k.key_id().0.clone(), signature: k.sign_in(KEYSET_CONTEXT, &payload) })
            .collect();
        SignedKeySet { payload: b64_encode(&payload), signatures }
    }
}

impl SignedKeySet {
    /// Verifies the statement against the keys the verifier trusts now and the version
    /// it holds; the payload is parsed only after a trusted signature has verified.
    pub fn verify(&self, trusted: &TrustedKeys, held_version: u64) -> Result<VerifiedKeySet, KeySetError> {
        let bad = |reason: String| KeySetError::Malformed { reason };
        if self.payload.len() > MAX_KEYSET_PAYLOAD * 4 / 3 + 4 {
            return Err(bad(format!("payload longer than {MAX_KEYSET_PAYLOAD} bytes")));
        }
        if self.signatures.len() > MAX_KEYS {
            return Err(bad(format!("more than {MAX_KEYS} signatures")));
        }
        let payload = b64_decode(&self.payload).map_err(|e| bad(format!("payload: {e}")))?;
        let mut signed_by = Vec::new();
        for s in &self.signatures {
            let Some(public) = trusted.get(&s.key_id) else { continue };
            let sig = b64_decode(&s.signature).map_err(|e| bad(format!("signature of {}: {e}", s.key_id)))?;
            aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, public)
                .verify(&signed_message(KEYSET_CONTEXT, &s.key_id, &payload), &sig)
                .map_err(|_| KeySetError::BadSignature { key_id: s.key_id.clone() })?;
            signed_by.push(s.key_id.clone());
        }
        if signed_by.is_empty() {
            let ids: Vec<&str> = self.signatures.iter().map(|s| s.key_id.as_str()).collect();
            return Err(KeySetError::NoTrustedSignature {
                signed_by: if ids.is_empty() { "nobody".into() } else { ids.join(", ") },
            });
        }
        let set: KeySet = serde_json::from_slice(&payload).map_err(|e| bad(format!("payload: {e}")))?;
        let keys = set.check()?;
        if set.version <= held_version {
            return Err(KeySetError::Rollback { version: set.version, held: held_version });
        }
        Ok(VerifiedKeySet { set, keys, signed_by })
    }

    /// The content without verifying anything: for display of a statement already held.
    pub fn unverified(&self) -> Result<KeySet, KeySetError> {
        let bad = |reason: String| KeySetError::Malformed { reason };
        let payload = b64_decode(&self.payload).map_err(|e| bad(format!("payload: {e}")))?;
        serde_json::from_slice(&payload).map_err(|e| bad(format!("payload: {e}")))
    }
}

/// The entry of `key` with `status`.
pub fn entry(key: &SigningKey, status: KeyStatus) -> KeySetEntry {
    KeySetEntry { key_id: key.key_id().0.clone(), public_key: b64_encode(&key.public_key()), status }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_seed(&[seed; 32]).expect("seed")
    }

    fn trust(keys: &[&SigningKey]) -> TrustedKeys {
        let mut t = TrustedKeys::new();
        for k in keys {
            t.insert(k.public_key());
        }
        t
    }

    fn set(version: u64, entries: Vec<KeySetEntry>) -> KeySet {
        KeySet { version, issued_at: 1_800_000_000, keys: entries }
    }

    #[test]
    fn a_chain_of_rotations_is_followed_from_the_first_key() {
        let (a, b, c) = (key(1), key(2), key(3));
        let v2 = set(2, vec![entry(&b, KeyStatus::Active), entry(&a, KeyStatus::Previous)]).sign(&[&a, &b]);
        let v3 = set(3, vec![entry(&b, KeyStatus::Active)]).sign(&[&b]);
        let v4 = set(4, vec![entry(&c, KeyStatus::Active), entry(&b, KeyStatus::Previous)]).sign(&[&b, &c]);
        let mut held = trust(&[&a]);
        let mut version = 1;
        for s in [&v2, &v3, &v4] {
            let v = s.verify(&held, version).expect("chain");
            held = v.keys;
            version = v.set.version;
        }
        assert_eq!(held, trust(&[&b, &c]));
        // Skipping v3 still works (v4 is signed by b); starting from a alone does not.
        assert!(v4.verify(&trust(&[&a]), 1).is_err());
    }

    #[test]
    fn a_statement_signed_only_by_strangers_is_refused() {
        let (a, x) = (key(1), key(9));
        let forged = set(2, vec![entry(&x, KeyStatus::Active)]).sign(&[&x]);
        let err = forged.verify(&trust(&[&a]), 1).expect_err("must be refused");
        assert!(matches!(err, KeySetError::NoTrustedSignature { .. }), "{err}");
    }

    #[test]
    fn a_tampered_payload_or_relabelled_signature_is_refused() {
        let (a, b) = (key(1), key(2));
        let good = set(2, vec![entry(&b, KeyStatus::Active), entry(&a, KeyStatus::Previous)]).sign(&[&a, &b]);
        let mut other = set(2, vec![entry(&b, KeyStatus::Active)]).sign(&[&a]);
        other.signatures = good.signatures.clone();
        assert_eq!(other.verify(&trust(&[&a]), 1).expect_err("must be refused").code(), "bad_signature");
        // A job signature can never pass as a key-set signature (different context).
        let env = a.sign_payload(&b64_decode(&good.payload).expect("b64"));
        let relabelled = SignedKeySet {
            payload: good.payload.clone(),
            signatures: vec![KeySetSignature { key_id: env.key_id, signature: env.signature }],
        };
        assert_eq!(relabelled.verify(&trust(&[&a]), 1).expect_err("must be refused").code(), "bad_signature");
    }

    #[test]
    fn an_older_or_equal_version_is_a_rollback() {
        let a = key(1);
        let s = set(3, vec![entry(&a, KeyStatus::Active)]).sign(&[&a]);
        assert_eq!(
            s.verify(&trust(&[&a]), 3).expect_err("must be refused"),
            KeySetError::Rollback { version: 3, held: 3 }
        );
        assert!(s.verify(&trust(&[&a]), 2).is_ok());
    }

    #[test]
    fn a_set_without_exactly_one_active_key_is_malformed() {
        let (a, b) = (key(1), key(2));
        let two = set(2, vec![entry(&a, KeyStatus::Active), entry(&b, KeyStatus::Active)]).sign(&[&a]);
        assert_eq!(two.verify(&trust(&[&a]), 1).expect_err("must be refused").code(), "malformed");
        let none = set(2, vec![entry(&a, KeyStatus::Previous)]).sign(&[&a]);
        assert_eq!(none.verify(&trust(&[&a]), 1).expect_err("must be refused").code(), "malformed");
        let mut wrong_id = entry(&b, KeyStatus::Active);
        wrong_id.key_id = a.key_id().0.clone();
        let s = set(2, vec![wrong_id]).sign(&[&a]);
        assert_eq!(s.verify(&trust(&[&a]), 1).expect_err("must be refused").code(), "malformed");
    }
}
