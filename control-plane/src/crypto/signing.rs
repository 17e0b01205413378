//! Job-signing keys: the private key files of the key ring and the keys a running control
//! plane has loaded.
//!
//! Each Ed25519 private key lives in its own file, `signing-keys/ed25519-<hex>.key`
//! (PKCS#8, 0600, in a 0700 directory), apart from every TLS key: a stolen TLS key cannot
//! sign jobs and a stolen signing key cannot impersonate the control plane on the wire.
//! The database holds only the public halves, each key's status and the signed
//! statements, so a running `serve` sees a rotation made by the CLI at its next job.
//!
//! Lifecycle of a key: `next` (published ahead of use, with `rotate --stage`) →
//! `active` (signs new jobs; exactly one) → `previous` (still accepted by agents) →
//! `retired` (gone from the set; its file is deleted; its undelivered jobs are re-signed
//! by the active key in the same transaction). Every change publishes a new statement
//! signed by every key of the new set; agents accept it only when it is signed by a key
//! they already trust (see `outpost_protocol::keyset`).
//!
//! This module owns the key files and the cache of loaded keys; the ring kept in the
//! store (its first key, rotation, retirement and the published set) is
//! the `key_ring` module's in `app`, a layer above the store.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use outpost_common::fsutil::{self, FileError};
use outpost_protocol::SigningKey;

/// Directory of the private keys in the data dir.
pub const KEY_DIR: &str = "signing-keys";
/// The single key file of data dirs made before key rotation existed; imported once.
pub const LEGACY_KEY_FILE: &str = "signing.key";

/// Signing-key failures.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// File problem.
    #[error(transparent)]
    File(#[from] FileError),
    /// The file does not hold the Ed25519 key it should.
    #[error("{path}: {reason}")]
    BadKey {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Path of the private key file of `key_id`.
pub fn key_path(data_dir: &Path, key_id: &str) -> PathBuf {
    data_dir.join(KEY_DIR).join(format!("{}.key", key_id.replace(':', "-")))
}

/// Generates a key and writes its private half; the key is not in the ring yet.
pub(crate) fn generate(data_dir: &Path) -> Result<SigningKey, SigningError> {
    fsutil::create_private_dir(&data_dir.join(KEY_DIR))?;
    let (key, pkcs8) = SigningKey::generate().map_err(|e| SigningError::BadKey {
        path: data_dir.join(KEY_DIR).display().to_string(),
        reason: e.to_string(),
    })?;
    fsutil::write_private(&key_path(data_dir, &key.key_id().0), &pkcs8)?;
    Ok(key)
}

/// Loads the private key of `key_id` and checks that it is that key.
pub fn load(data_dir: &Path, key_id: &str) -> Result<SigningKey, SigningError> {
    load_file(&key_path(data_dir, key_id), Some(key_id))
}

fn load_file(path: &Path, expected_id: Option<&str>) -> Result<SigningKey, SigningError> {
    let bad = |reason: String| SigningError::BadKey { path: path.display().to_string(), reason };
    let bytes = zeroize::Zeroizing::new(fsutil::read_private(path, 4096)?);
    let key = SigningKey::from_pkcs8(&bytes).map_err(|e| bad(e.to_string()))?;
    if let Some(id) = expected_id {
        if key.key_id().0 != id {
            return Err(bad(format!("holds key {}, not {id}", key.key_id())));
        }
    }
    Ok(key)
}

/// Private keys loaded by a running control plane, by id. A key is read from its file
/// the first time it is needed, so a key made active by the CLI is picked up at once.
#[derive(Debug, Default)]
pub struct KeyCache {
    keys: Mutex<HashMap<String, Arc<SigningKey>>>,
    /// The id of the key that signed the last job queued: the active key as last seen.
    active: Mutex<Option<String>>,
}

impl KeyCache {
    /// The private key of `key_id`.
    pub fn get(&self, data_dir: &Path, key_id: &str) -> Result<Arc<SigningKey>, SigningError> {
        if let Some(k) = self.keys.lock().ok().and_then(|m| m.get(key_id).cloned()) {
            return Ok(k);
        }
        let key = Arc::new(load(data_dir, key_id)?);
        if let Ok(mut m) = self.keys.lock() {
            m.insert(key_id.to_owned(), Arc::clone(&key));
        }
        Ok(key)
    }

    /// Forgets `key_id` (after its retirement or rotation), and that it was active.
    pub fn forget(&self, key_id: &str) {
        if let Ok(mut m) = self.keys.lock() {
            m.remove(key_id);
        }
        if let Ok(mut a) = self.active.lock() {
            if a.as_deref() == Some(key_id) {
                *a = None;
            }
        }
    }

    /// The active key's id as last seen ([`set_active`](Self::set_active)), if any.
    pub fn active(&self) -> Option<String> {
        self.active.lock().ok().and_then(|a| a.clone())
    }

    /// Notes that the store accepted a job signed by `key_id`: it is the active key.
    pub fn set_active(&self, key_id: &str) {
        if let Ok(mut a) = self.active.lock() {
            if a.as_deref() != Some(key_id) {
                *a = Some(key_id.to_owned());
            }
        }
    }
}
