//! The agent's identity on disk, written by `enroll` and read by `run` and `status`.
//!
//! `state_dir/agent.key` (0600) is the private key, generated here and never sent
//! anywhere; `agent.crt` is the client certificate the control plane issued from our
//! CSR; `ca.crt` is the control plane's CA (pinned by hash at enrolment); and
//! `enrolment.json` records the agent name, address and the job-signing keys received.

use std::path::Path;

use outpost_common::fsutil::{self, FileError};
use outpost_protocol::enrol::PublishedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// Private key file (0600).
pub const KEY_FILE: &str = "agent.key";
/// Client certificate.
pub const CERT_FILE: &str = "agent.crt";
/// The control plane's CA.
pub const CA_FILE: &str = "ca.crt";
/// Enrolment record.
pub const ENROLMENT_FILE: &str = "enrolment.json";

/// What enrolment recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrolment {
    /// This agent's name (the certificate CN and every job's audience).
    pub agent: String,
    /// `host:port` of the control plane's agent listener.
    pub address: String,
    /// Name in the control plane's certificate.
    pub server_name: String,
    /// SHA-256 of the CA certificate, hex.
    pub ca_sha256: String,
    /// Unix seconds.
    pub enrolled_at: i64,
    /// Certificate expiry, unix seconds.
    pub not_after: i64,
    /// When the current certificate was received (enrolment or last renewal), unix seconds.
    pub cert_issued_at: i64,
    /// Job-signing keys received at enrolment.
    pub signing_keys: Vec<PublishedKey>,
    /// The control plane's key-set version those keys came from.
    #[serde(default)]
    pub key_set_version: u64,
    /// The pool this agent was enrolled into: it also runs jobs addressed to
    /// `pool:<name>` (one live member of the pool gets each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
}

/// Identity problems.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Not enrolled yet.
    #[error("this agent is not enrolled ({path} is missing); run: outpost-agent enroll --token TOKEN")]
    NotEnrolled {
        /// The missing file.
        path: String,
    },
    /// File problem.
    #[error(transparent)]
    File(#[from] FileError),
    /// A file's content is wrong.
    #[error("{path}: {reason}")]
    Corrupt {
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
}

/// The loaded identity.
pub struct Identity {
    /// Enrolment record.
    pub enrolment: Enrolment,
    /// Our certificate.
    pub cert: CertificateDer<'static>,
    /// Our private key.
    pub key: PrivateKeyDer<'static>,
    /// The control plane's CA.
    pub ca: CertificateDer<'static>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("enrolment", &self.enrolment)
            .field("key", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

const MAX_FILE: u64 = 64 * 1024;

fn corrupt(path: &Path, reason: impl std::fmt::Display) -> IdentityError {
    IdentityError::Corrupt { path: path.display().to_string(), reason: reason.to_string() }
}

/// Loads the identity from `state_dir`.
pub fn load(state_dir: &Path) -> Result<Identity, IdentityError> {
    roll_forward(state_dir)?;
    let rec_path = state_dir.join(ENROLMENT_FILE);
    if !rec_path.exists() {
        return Err(IdentityError::NotEnrolled { path: rec_path.display().to_string() });
    }
    let enrolment: Enrolment =
        serde_json::from_slice(&fsutil::read_capped_file(&rec_path, MAX_FILE)?).map_err(|e| corrupt(&rec_path, e))?;
    let cert_path = state_dir.join(CERT_FILE);
    let cert = CertificateDer::from_pem_slice(&fsutil::read_capped_file(&cert_path, MAX_FILE)?)
        .map_err(|e| corrupt(&cert_path, e))?;
    let ca_path = state_dir.join(CA_FILE);
    let ca = CertificateDer::from_pem_slice(&fsutil::read_capped_file(&ca_path, MAX_FILE)?)
        .map_err(|e| corrupt(&ca_path, e))?;
    if outpost_protocol::encoding::sha256_hex(&ca) != enrolment.ca_sha256 {
        return Err(corrupt(&ca_path, "does not match the CA pin recorded at enrolment"));
    }
    let key_path = state_dir.join(KEY_FILE);
    let key_pem = zeroize::Zeroizing::new(fsutil::read_private(&key_path, MAX_FILE)?);
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| corrupt(&key_path, e))?;
    Ok(Identity { enrolment, cert, key, ca })
}

/// After a renewal: replaces key, certificate and record together. All three are first
/// written completely as `*.next` files, the record last (its presence means the set is
/// complete); then each is renamed into place, the record last. [`load`] finishes an
/// interrupted set of renames, or discards an incomplete set, so a crash at any point
/// leaves the old identity or the new one, never a key that does not match its certificate.
pub fn save_renewal(
    state_dir: &Path,
    key_pem: &str,
    cert_pem: &str,
    enrolment: &Enrolment,
) -> Result<(), IdentityError> {
    fsutil::write_private(&state_dir.join(next(KEY_FILE)), key_pem.as_bytes())?;
    fsutil::write_atomic(&state_dir.join(next(CERT_FILE)), cert_pem.as_bytes(), 0o644)?;
    let json = serde_json::to_vec_pretty(enrolment).unwrap_or_default();
    fsutil::write_atomic(&state_dir.join(next(ENROLMENT_FILE)), &json, 0o600)?;
    roll_forward(state_dir)
}

fn next(name: &str) -> String {
    format!("{name}.next")
}

/// Completes or discards a renewal that was interrupted.
fn roll_forward(state_dir: &Path) -> Result<(), IdentityError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| IdentityError::File(FileError::Io { path, source })
    };
    let record = state_dir.join(next(ENROLMENT_FILE));
    let complete = record.exists();
    for name in [KEY_FILE, CERT_FILE, ENROLMENT_FILE] {
        let pending = state_dir.join(next(name));
        if !pending.exists() {
            continue;
        }
        if complete {
            std::fs::rename(&pending, state_dir.join(name)).map_err(io(&pending))?;
        } else {
            std::fs::remove_file(&pending).map_err(io(&pending))?;
        }
    }
    Ok(())
}

/// Writes a new identity; the key first, the enrolment record last, each atomically.
pub fn save(
    state_dir: &Path,
    key_pem: &str,
    cert_pem: &str,
    ca_pem: &str,
    enrolment: &Enrolment,
) -> Result<(), IdentityError> {
    fsutil::create_private_dir(state_dir)?;
    fsutil::write_private(&state_dir.join(KEY_FILE), key_pem.as_bytes())?;
    fsutil::write_atomic(&state_dir.join(CERT_FILE), cert_pem.as_bytes(), 0o644)?;
    fsutil::write_atomic(&state_dir.join(CA_FILE), ca_pem.as_bytes(), 0o644)?;
    let json = serde_json::to_vec_pretty(enrolment).unwrap_or_default();
    fsutil::write_atomic(&state_dir.join(ENROLMENT_FILE), &json, 0o600)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn an_interrupted_renewal_is_finished_and_an_incomplete_one_discarded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for f in [KEY_FILE, CERT_FILE, ENROLMENT_FILE] {
            std::fs::write(d.join(f), "old").expect("write");
        }
        // Crash after the key was renamed but before the certificate and record: finish.
        std::fs::write(d.join(KEY_FILE), "new").expect("write");
        std::fs::write(d.join(next(CERT_FILE)), "new").expect("write");
        std::fs::write(d.join(next(ENROLMENT_FILE)), "new").expect("write");
        roll_forward(d).expect("roll forward");
        for f in [KEY_FILE, CERT_FILE, ENROLMENT_FILE] {
            assert_eq!(std::fs::read_to_string(d.join(f)).expect("read"), "new", "{f}");
        }
        // Crash while writing the set (no record yet): discard, keep the current identity.
        std::fs::write(d.join(next(KEY_FILE)), "newer").expect("write");
        roll_forward(d).expect("discard");
        assert_eq!(std::fs::read_to_string(d.join(KEY_FILE)).expect("read"), "new");
        assert_eq!(files(d), [CERT_FILE, KEY_FILE, ENROLMENT_FILE]);
    }
}
