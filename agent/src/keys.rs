//! The job-signing keys this agent trusts, and how that set changes.
//!
//! Three sources, in order of authority:
//! 1. `trusted_keys` in agent.yaml: always trusted; nothing the control plane says removes
//!    one. With `key_trust: pinned_only` they are the only keys trusted.
//! 2. The keys received at enrolment (over TLS to the CA pinned by the token).
//! 3. Key-set statements from the control plane, accepted only when signed by a key
//!    trusted at that moment and newer than the one held (see
//!    `outpost_protocol::keyset`). An accepted statement replaces the learned keys and is
//!    kept in `state_dir/key-set.json` (0600), so a restart does not fall back to older keys.

use std::path::{Path, PathBuf};

use outpost_common::fsutil;
use outpost_protocol::keyset::{KeySetError, SignedKeySet};
use outpost_protocol::TrustedKeys;
use serde::{Deserialize, Serialize};

use crate::config::{AgentConfig, KeyTrustMode};
use crate::identity::Enrolment;

/// The last accepted statement, in the state dir.
pub const KEY_SET_FILE: &str = "key-set.json";
/// Largest key-set file read.
const MAX_FILE: u64 = 64 * 1024;

/// What `key-set.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKeySet {
    version: u64,
    statement: SignedKeySet,
}

/// Key-trust failures.
#[derive(Debug, thiserror::Error)]
pub enum KeyTrustError {
    /// The stored statement cannot be used.
    #[error("{path}: {reason}; delete it to fall back to the keys received at enrolment")]
    Corrupt {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A file problem.
    #[error(transparent)]
    File(#[from] fsutil::FileError),
}

/// Why a key-set update was not taken.
#[derive(Debug, thiserror::Error)]
pub enum UpdateRefused {
    /// `key_trust: pinned_only`.
    #[error("key_trust is pinned_only: key-set updates from the control plane are refused")]
    PinnedOnly,
    /// The statement failed verification.
    #[error(transparent)]
    Invalid(#[from] KeySetError),
    /// It could not be stored, so it is not used either.
    #[error("cannot store the key set: {0}")]
    Store(#[from] fsutil::FileError),
}

impl UpdateRefused {
    /// Stable short name for the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            UpdateRefused::PinnedOnly => "pinned_only",
            UpdateRefused::Invalid(e) => e.code(),
            UpdateRefused::Store(_) => "store_failed",
        }
    }
}

/// An accepted update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The new version.
    pub version: u64,
    /// Key ids newly trusted.
    pub added: Vec<String>,
    /// Key ids no longer trusted.
    pub removed: Vec<String>,
    /// Trusted keys whose signatures verified.
    pub signed_by: Vec<String>,
}

/// The agent's trusted keys.
#[derive(Debug, Clone)]
pub struct KeyTrust {
    mode: KeyTrustMode,
    pinned: TrustedKeys,
    learned: TrustedKeys,
    version: u64,
    all: TrustedKeys,
    file: PathBuf,
}

impl KeyTrust {
    /// Loads the trust state for `cfg` and the enrolment record.
    pub fn load(cfg: &AgentConfig, enrolment: &Enrolment) -> Result<Self, KeyTrustError> {
        let file = cfg.state_dir.join(KEY_SET_FILE);
        let pinned = cfg.pinned_keys();
        let (learned, version) = match cfg.key_trust {
            // The version only marks which statements are news; none is ever used.
            KeyTrustMode::PinnedOnly => (TrustedKeys::new(), enrolment.key_set_version),
            KeyTrustMode::Learn if file.exists() => load_stored(&file)?,
            KeyTrustMode::Learn => {
                let mut keys = TrustedKeys::new();
                for k in &enrolment.signing_keys {
                    if let Err(e) = keys.insert_b64(&k.public_key, Some(&k.key_id)) {
                        tracing::warn!(key_id = %k.key_id, error = %e, "Ignoring an invalid key from the enrolment record.");
                    }
                }
                (keys, enrolment.key_set_version)
            }
        };
        let mut t = Self { mode: cfg.key_trust, pinned, learned, version, all: TrustedKeys::new(), file };
        t.recompute();
        Ok(t)
    }

    fn recompute(&mut self) {
        let mut all = self.pinned.clone();
        all.extend(&self.learned);
        self.all = all;
    }

    /// Every key a job may be signed by.
    pub fn trusted(&self) -> &TrustedKeys {
        &self.all
    }

    /// Whether `key_id` comes from the config.
    pub fn is_pinned(&self, key_id: &str) -> bool {
        self.pinned.contains(key_id)
    }

    /// The key-set version held (0: none learned).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The mode.
    pub fn mode(&self) -> KeyTrustMode {
        self.mode
    }

    /// Whether an update to `version` should be fetched.
    pub fn wants(&self, version: u64) -> bool {
        self.mode == KeyTrustMode::Learn && version > self.version
    }

    /// Verifies `statement` and, if it is good, stores it and makes its keys the learned
    /// ones. Nothing changes on refusal.
    pub fn apply(&mut self, statement: &SignedKeySet) -> Result<Applied, UpdateRefused> {
        if self.mode == KeyTrustMode::PinnedOnly {
            return Err(UpdateRefused::PinnedOnly);
        }
        let verified = statement.verify(&self.all, self.version)?;
        let stored = StoredKeySet { version: verified.set.version, statement: statement.clone() };
        fsutil::write_private(&self.file, &serde_json::to_vec(&stored).unwrap_or_default())?;
        let before: Vec<String> = self.all.ids().map(str::to_owned).collect();
        self.learned = verified.keys;
        self.version = verified.set.version;
        self.recompute();
        let after: Vec<String> = self.all.ids().map(str::to_owned).collect();
        Ok(Applied {
            version: self.version,
            added: after.iter().filter(|k| !before.contains(k)).cloned().collect(),
            removed: before.iter().filter(|k| !after.contains(k)).cloned().collect(),
            signed_by: verified.signed_by,
        })
    }
}

/// Reads `key-set.json`: a statement that verifies under its own keys (so a damaged file
/// is noticed) at the version recorded beside it.
fn load_stored(file: &Path) -> Result<(TrustedKeys, u64), KeyTrustError> {
    let corrupt = |reason: String| KeyTrustError::Corrupt { path: file.display().to_string(), reason };
    let bytes = fsutil::read_private(file, MAX_FILE)?;
    let stored: StoredKeySet = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let own = stored.statement.unverified().and_then(|s| s.check()).map_err(|e| corrupt(e.to_string()))?;
    let verified =
        stored.statement.verify(&own, stored.version.saturating_sub(1)).map_err(|e| corrupt(e.to_string()))?;
    if verified.set.version != stored.version {
        return Err(corrupt(format!(
            "records version {} for a statement of version {}",
            stored.version, verified.set.version
        )));
    }
    Ok((verified.keys, stored.version))
}

/// Removes a stored key set (a new enrolment brings its own keys).
pub fn forget(state_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(state_dir.join(KEY_SET_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_protocol::encoding::b64_encode;
    use outpost_protocol::enrol::PublishedKey;
    use outpost_protocol::keyset::{entry, KeySet, KeyStatus};
    use outpost_protocol::SigningKey;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_seed(&[seed; 32]).expect("seed")
    }

    fn cfg(dir: &Path, extra: &str) -> AgentConfig {
        AgentConfig::parse("test", &format!("state_dir: {}\n{extra}", dir.display())).expect("config")
    }

    fn enrolment(keys: &[&SigningKey]) -> Enrolment {
        Enrolment {
            agent: "edge-1".into(),
            address: "127.0.0.1:1".into(),
            server_name: "localhost".into(),
            ca_sha256: "00".repeat(32),
            enrolled_at: 0,
            not_after: 0,
            cert_issued_at: 0,
            signing_keys: keys
                .iter()
                .map(|k| PublishedKey { key_id: k.key_id().0.clone(), public_key: b64_encode(&k.public_key()) })
                .collect(),
            key_set_version: 1,
            pool: None,
        }
    }

    fn pin(k: &SigningKey) -> String {
        format!("trusted_keys:\n  - key_id: {}\n    public_key: {}\n", k.key_id(), b64_encode(&k.public_key()))
    }

    #[test]
    fn an_update_is_kept_across_a_restart_and_a_pinned_key_is_never_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b, p) = (key(1), key(2), key(7));
        let cfg = cfg(dir.path(), &pin(&p));
        let mut t = KeyTrust::load(&cfg, &enrolment(&[&a])).expect("load");
        let v2 = KeySet { version: 2, issued_at: 0, keys: vec![entry(&b, KeyStatus::Active)] }.sign(&[&a, &b]);
        let applied = t.apply(&v2).expect("apply");
        assert_eq!(applied.added, vec![b.key_id().0.clone()]);
        assert_eq!(applied.removed, vec![a.key_id().0.clone()]);
        assert!(t.trusted().contains(&p.key_id().0), "the pinned key stays although v2 does not list it");
        let again = KeyTrust::load(&cfg, &enrolment(&[&a])).expect("reload");
        assert_eq!(again.version(), 2);
        assert_eq!(again.trusted(), t.trusted());
        // Replaying the same statement is a rollback, and changes nothing.
        assert!(matches!(t.apply(&v2), Err(UpdateRefused::Invalid(KeySetError::Rollback { .. }))));
    }

    #[test]
    fn pinned_only_refuses_updates_and_ignores_the_enrolment_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, p) = (key(1), key(7));
        let cfg = cfg(dir.path(), &format!("{}key_trust: pinned_only\n", pin(&p)));
        let mut t = KeyTrust::load(&cfg, &enrolment(&[&a])).expect("load");
        assert!(!t.trusted().contains(&a.key_id().0));
        assert!(!t.wants(5));
        let v2 = KeySet { version: 2, issued_at: 0, keys: vec![entry(&a, KeyStatus::Active)] }.sign(&[&p]);
        assert!(matches!(t.apply(&v2), Err(UpdateRefused::PinnedOnly)));
        assert!(!dir.path().join(KEY_SET_FILE).exists());
    }

    #[test]
    fn a_forged_update_changes_nothing_and_a_damaged_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, x) = (key(1), key(9));
        let cfg = cfg(dir.path(), "");
        let mut t = KeyTrust::load(&cfg, &enrolment(&[&a])).expect("load");
        let forged = KeySet { version: 9, issued_at: 0, keys: vec![entry(&x, KeyStatus::Active)] }.sign(&[&x]);
        assert_eq!(t.apply(&forged).expect_err("must be refused").code(), "untrusted");
        assert_eq!(t.version(), 1);
        assert!(t.trusted().contains(&a.key_id().0));
        fsutil::write_private(&dir.path().join(KEY_SET_FILE), b"{\"version\":3}").expect("write");
        assert!(matches!(KeyTrust::load(&cfg, &enrolment(&[&a])), Err(KeyTrustError::Corrupt { .. })));
    }
}
