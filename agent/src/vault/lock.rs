//! Advisory locks in the state dir: one held by a running agent, one while the vault is
//! changed.

use std::path::Path;

use outpost_common::fsutil::{self, FileError};

use super::VaultError;

/// An exclusive advisory lock on a file in the state dir, released on drop (or when the
/// process dies, however it dies).
#[derive(Debug)]
pub struct StateLock {
    _file: std::fs::File,
}

/// Lock held by `outpost-agent run` for as long as it runs.
pub const RUN_LOCK: &str = "agent.lock";
/// Lock held while the vault is changed.
pub const VAULT_LOCK: &str = "vault.lock";

impl StateLock {
    fn file(state_dir: &Path, name: &str) -> Result<std::fs::File, VaultError> {
        use std::os::unix::fs::OpenOptionsExt;
        fsutil::create_private_dir(state_dir)?;
        let path = state_dir.join(name);
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| VaultError::File(FileError::Io { path, source }))
    }

    /// Takes the lock `name`, or says it is held.
    pub fn try_acquire(state_dir: &Path, name: &str) -> Result<Option<Self>, VaultError> {
        let f = Self::file(state_dir, name)?;
        match f.try_lock() {
            Ok(()) => Ok(Some(Self { _file: f })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(source)) => {
                Err(VaultError::File(FileError::Io { path: state_dir.join(name), source }))
            }
        }
    }

    /// Takes the lock `name`, waiting for its holder.
    pub fn acquire(state_dir: &Path, name: &str) -> Result<Self, VaultError> {
        let f = Self::file(state_dir, name)?;
        f.lock().map_err(|source| VaultError::File(FileError::Io { path: state_dir.join(name), source }))?;
        Ok(Self { _file: f })
    }
}
