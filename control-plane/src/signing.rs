//! The job-signing key.
//!
//! An Ed25519 key kept in `signing.key` (PKCS#8, 0600), apart from every TLS key: a
//! stolen TLS key cannot sign jobs and a stolen signing key cannot impersonate the
//! control plane on the wire. Agents receive the public half at enrolment.

use std::path::Path;

use outpost_common::fsutil::{self, FileError};
use outpost_protocol::encoding::b64_encode;
use outpost_protocol::enrol::PublishedKey;
use outpost_protocol::SigningKey;

/// File name of the signing key in the data dir.
pub const SIGNING_KEY: &str = "signing.key";

/// Signing-key failures.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// File problem.
    #[error(transparent)]
    File(#[from] FileError),
    /// The file does not hold an Ed25519 key.
    #[error("{path}: {source}")]
    BadKey {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: outpost_protocol::envelope::BadSigningKey,
    },
}

/// Generates and stores a new signing key.
pub fn create(dir: &Path) -> Result<SigningKey, SigningError> {
    let path = dir.join(SIGNING_KEY);
    let (key, pkcs8) =
        SigningKey::generate().map_err(|source| SigningError::BadKey { path: path.display().to_string(), source })?;
    fsutil::write_private(&path, &pkcs8)?;
    Ok(key)
}

/// Loads the signing key.
pub fn load(dir: &Path) -> Result<SigningKey, SigningError> {
    let path = dir.join(SIGNING_KEY);
    let bytes = zeroize::Zeroizing::new(fsutil::read_private(&path, 4096)?);
    SigningKey::from_pkcs8(&bytes).map_err(|source| SigningError::BadKey { path: path.display().to_string(), source })
}

/// The public keys agents should trust.
pub fn published(key: &SigningKey) -> Vec<PublishedKey> {
    vec![PublishedKey { key_id: key.key_id().0.clone(), public_key: b64_encode(&key.public_key()) }]
}
