//! The head of an agent's audit log, signed by the agent: how far its hash chain
//! reached when it said so. The agent sends it with every heartbeat and result; the
//! control plane keeps the latest per agent; `outpost-agent audit verify --head` compares
//! it with the log on disk, so that records cut from the log's end (after its last
//! signed checkpoint) are detected.

use serde::{Deserialize, Serialize};

use crate::encoding::b64_decode;

/// What an audit head's signature covers: this, `seq` and `hash`, one per line.
pub const AUDIT_HEAD_CONTEXT: &str = "outpost-audit-head/v1";

/// The last record of an agent's audit log, signed by the agent's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditHead {
    /// `seq` of the last record written.
    pub seq: u64,
    /// SHA-256 (hex) of that record's line, as the next record's `prev` would say.
    pub hash: String,
    /// The agent's public key (uncompressed P-256 point, base64): the key of its
    /// certificate when it signed.
    pub key: String,
    /// ECDSA P-256 SHA-256 signature (ASN.1 DER, base64) of [`head_message`].
    pub signature: String,
}

/// The bytes an audit head signs.
pub fn head_message(seq: u64, hash: &str) -> Vec<u8> {
    format!("{AUDIT_HEAD_CONTEXT}\n{seq}\n{hash}").into_bytes()
}

/// Why an audit head is refused. Each text starts with the field at fault; the control
/// plane records it, and `audit verify --head` prints it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// `hash` is not 64 lower-case hex digits.
    #[error("audit_head.hash: not a SHA-256 in lower-case hex")]
    Hash,
    /// `key` or `signature` is longer than any P-256 key or signature.
    #[error("audit_head: key or signature too long")]
    TooLong,
    /// `key` is not base64. The text repeats the decoder's words on purpose: it is
    /// recorded alone.
    #[error("audit_head.key: {0}")]
    Key(#[source] base64::DecodeError),
    /// `signature` is not base64 (the decoder's words follow, as above).
    #[error("audit_head.signature: {0}")]
    SignatureEncoding(#[source] base64::DecodeError),
    /// The signature does not verify under the key.
    #[error("audit_head.signature: does not verify under audit_head.key")]
    Forged,
}

impl AuditHead {
    /// Checks the shape and the signature under the head's own key; returns the key's
    /// bytes (the caller decides whether it is the agent's).
    pub fn verify(&self) -> Result<Vec<u8>, HeadError> {
        if self.hash.len() != 64 || !self.hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(HeadError::Hash);
        }
        if self.key.len() > 200 || self.signature.len() > 200 {
            return Err(HeadError::TooLong);
        }
        let key = b64_decode(&self.key).map_err(HeadError::Key)?;
        let sig = b64_decode(&self.signature).map_err(HeadError::SignatureEncoding)?;
        aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1, &key)
            .verify(&head_message(self.seq, &self.hash), &sig)
            .map_err(|_| HeadError::Forged)?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING};

    #[test]
    fn a_head_verifies_under_its_key_and_nothing_else() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).expect("key");
        let hash = "ab".repeat(32);
        let sig = key.sign(&rng, &head_message(41, &hash)).expect("sign");
        let head = AuditHead {
            seq: 41,
            hash: hash.clone(),
            key: crate::encoding::b64_encode(key.public_key().as_ref()),
            signature: crate::encoding::b64_encode(sig.as_ref()),
        };
        assert_eq!(head.verify().expect("verifies"), key.public_key().as_ref());
        assert_eq!(AuditHead { seq: 42, ..head.clone() }.verify(), Err(HeadError::Forged), "another seq");
        assert_eq!(
            AuditHead { hash: "cd".repeat(32), ..head.clone() }.verify(),
            Err(HeadError::Forged),
            "another hash"
        );
        let upper = AuditHead { hash: "AB".repeat(32), ..head.clone() }.verify().expect_err("upper-case hex");
        assert_eq!(upper.to_string(), "audit_head.hash: not a SHA-256 in lower-case hex");
        let forged = AuditHead { seq: 42, ..head.clone() }.verify().expect_err("forged");
        assert_eq!(forged.to_string(), "audit_head.signature: does not verify under audit_head.key");
        let long = AuditHead { key: "A".repeat(201), ..head.clone() }.verify().expect_err("long");
        assert_eq!(long.to_string(), "audit_head: key or signature too long");
        let bad = AuditHead { key: "*".into(), ..head }.verify().expect_err("not base64");
        assert!(bad.to_string().starts_with("audit_head.key: "), "{bad}");
    }
}
