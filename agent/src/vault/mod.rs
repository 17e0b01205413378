//! The credentials vault: database (and proxy) secrets, encrypted at rest.
//!
//! `state_dir/vault.json` (0600, written atomically) holds each secret sealed with
//! AES-256-GCM under a random 256-bit **data key**; the data key is itself sealed under a
//! **master key** that never sits beside the vault. The master key comes from, in order:
//!
//! 1. a systemd credential `outpost-master-key` in `$CREDENTIALS_DIRECTORY` (so
//!    `LoadCredentialEncrypted=` works): 32 raw bytes, or 64 hex digits;
//! 2. a key file (default `state_dir/master.key`, 32 random bytes, created 0600 on the
//!    first use when no vault exists yet; never re-created for an existing vault);
//! 3. with `vault.master_key: passphrase`, a passphrase stretched with Argon2id
//!    (64 MiB, 3 passes), from the systemd credential `outpost-vault-passphrase` or
//!    typed at the terminal.
//!
//! Each secret's associated data binds its name and the data key's id, so a sealed value
//! moved to another name, or into another vault, does not open. A wrong master key is a
//! clear error and nothing is written. `outpost-agent keys rotate` replaces the data key
//! and re-seals every secret in one atomic write; the result cache's key is derived from
//! the data key, so the rotation also retires every cache entry. Secrets in memory are `SecretString`s: zeroized on
//! drop and printed as `[REDACTED]`.
//!
//! Files: `seal` (AES-256-GCM sealing and Argon2id stretching), `master` (where the
//! master key comes from), `lock` (the state dir's advisory locks).

mod lock;
mod master;
mod seal;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use outpost_common::fsutil::{self, FileError};
use outpost_protocol::encoding::hex;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use self::lock::{StateLock, RUN_LOCK, VAULT_LOCK};
use self::master::master_key;
pub use self::master::KeySettings;
use self::seal::{entry_aad, open, random, seal};

/// The vault file in the state dir.
pub const VAULT_FILE: &str = "vault.json";
/// Default key file in the state dir.
pub const KEY_FILE: &str = "master.key";
/// Name of the systemd credential holding the master key.
pub const SYSTEMD_KEY: &str = "outpost-master-key";
/// Name of the systemd credential holding the passphrase.
pub const SYSTEMD_PASSPHRASE: &str = "outpost-vault-passphrase";
/// Largest secret stored (bytes).
pub const MAX_SECRET: usize = 16 * 1024;
/// Argon2id cost: memory in KiB, passes, lanes.
const ARGON2: (u32, u32, u32) = (64 * 1024, 3, 1);
const FORMAT: u32 = 1;
const AAD_DATA_KEY: &str = "outpost/vault/data-key/v1";
const AAD_ENTRY: &str = "outpost/vault/entry/v1";
const AAD_CACHE_KEY: &str = "outpost/cache-key/v1";
/// HKDF salt of the egress policy's keyed-hash key.
const SALT_MASK_KEY: &str = "outpost/mask-key/v1";

/// Where the master key comes from (`vault.master_key` in agent.yaml).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MasterKeySource {
    /// The systemd credential if present, else the key file.
    #[default]
    Auto,
    /// Only the systemd credential `outpost-master-key`.
    Systemd,
    /// Only the key file.
    KeyFile,
    /// A passphrase stretched with Argon2id.
    Passphrase,
}

/// Vault failures. None of them carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// File problem.
    #[error(transparent)]
    File(#[from] FileError),
    /// The vault file is not a vault.
    #[error("{path}: not a valid vault: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The master key does not open the vault.
    #[error("the master key from {tried} does not open {path} (it was sealed with a key from {sealed_with}); wrong key file, credential or passphrase? Nothing was changed")]
    WrongKey {
        /// The vault.
        path: String,
        /// Where the key came from this time.
        tried: String,
        /// What the vault says it was sealed with.
        sealed_with: String,
    },
    /// No master key can be found.
    #[error("no master key: {0}")]
    NoKey(String),
    /// A stored value does not open (tampered, or moved from another name or vault).
    #[error("{path}: the secret {name:?} does not decrypt; it was altered or copied from elsewhere. Set it again with: outpost-agent credentials set {name}")]
    Tampered {
        /// The vault.
        path: String,
        /// Entry name.
        name: String,
    },
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed {
    nonce: String,
    ciphertext: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Argon2Params {
    salt: String,
    m_kib: u32,
    t: u32,
    p: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MasterInfo {
    /// `systemd`, `key_file` or `passphrase`.
    source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    argon2: Option<Argon2Params>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    set_at: i64,
    sealed: Sealed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VaultFile {
    format: u32,
    master: MasterInfo,
    data_key_id: String,
    data_key: Sealed,
    entries: BTreeMap<String, Entry>,
}

/// Asks for a passphrase (at a terminal); `confirm` when one is being chosen.
pub type PassphrasePrompt<'a> = &'a dyn Fn(bool) -> Result<SecretString, VaultError>;

/// An open vault.
pub struct Vault {
    path: PathBuf,
    file: VaultFile,
    master: Zeroizing<[u8; 32]>,
    data_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("path", &self.path).field("entries", &self.file.entries.len()).finish()
    }
}

impl Vault {
    /// The vault path of `state_dir`.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(VAULT_FILE)
    }

    /// Whether a vault exists in `state_dir`.
    pub fn exists(state_dir: &Path) -> bool {
        Self::path(state_dir).exists()
    }

    /// Opens the vault of `state_dir`, creating an empty one (and, for a key file, the
    /// key) if there is none yet.
    pub fn open_or_create(
        state_dir: &Path,
        settings: &KeySettings,
        prompt: PassphrasePrompt<'_>,
    ) -> Result<Self, VaultError> {
        let path = Self::path(state_dir);
        if !path.exists() {
            fsutil::create_private_dir(state_dir)?;
            let (master, info, _) = master_key(settings, None, prompt)?;
            let data_key = Zeroizing::new(random::<32>()?);
            let data_key_id = hex(&random::<8>()?);
            let sealed = seal(&master, &format!("{AAD_DATA_KEY}\0{data_key_id}"), data_key.as_ref())?;
            let file =
                VaultFile { format: FORMAT, master: info, data_key_id, data_key: sealed, entries: BTreeMap::new() };
            let vault = Self { path, file, master, data_key };
            vault.save()?;
            return Ok(vault);
        }
        Self::open(state_dir, settings, prompt)
    }

    /// The names of the credentials stored in `state_dir`'s vault, read without the master
    /// key (names are not secret; values stay sealed): for `config check`.
    pub fn stored_names(state_dir: &Path) -> Result<Vec<String>, VaultError> {
        let path = Self::path(state_dir);
        let bytes = fsutil::read_private(&path, 16 * 1024 * 1024)?;
        let file: VaultFile = serde_json::from_slice(&bytes)
            .map_err(|e| VaultError::Corrupt { path: path.display().to_string(), reason: e.to_string() })?;
        Ok(file.entries.into_keys().collect())
    }

    /// Opens an existing vault.
    pub fn open(state_dir: &Path, settings: &KeySettings, prompt: PassphrasePrompt<'_>) -> Result<Self, VaultError> {
        let path = Self::path(state_dir);
        let corrupt = |reason: String| VaultError::Corrupt { path: path.display().to_string(), reason };
        let bytes = fsutil::read_private(&path, 16 * 1024 * 1024)?;
        let file: VaultFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if file.format != FORMAT {
            return Err(corrupt(format!("format {} is not supported by this build ({FORMAT})", file.format)));
        }
        let (master, _, tried) = master_key(settings, Some(&file.master), prompt)?;
        let plain =
            open(&master, &format!("{AAD_DATA_KEY}\0{}", file.data_key_id), &file.data_key).ok_or_else(|| {
                VaultError::WrongKey {
                    path: path.display().to_string(),
                    tried,
                    sealed_with: file.master.source.replace('_', " "),
                }
            })?;
        let data_key: [u8; 32] = plain.as_slice().try_into().map_err(|_| corrupt("data key is not 32 bytes".into()))?;
        Ok(Self { path, file, master, data_key: Zeroizing::new(data_key) })
    }

    fn save(&self) -> Result<(), VaultError> {
        let json = serde_json::to_vec_pretty(&self.file).map_err(|e| VaultError::Invalid(e.to_string()))?;
        fsutil::write_private(&self.path, &json)?;
        Ok(())
    }

    /// Stores `secret` under `name` (replacing any earlier one).
    pub fn set(&mut self, name: &str, secret: &SecretString, now: i64) -> Result<(), VaultError> {
        outpost_protocol::job::validate_name(name).map_err(|e| VaultError::Invalid(format!("name {name:?}: {e}")))?;
        let s = secret.expose_secret();
        if s.is_empty() || s.len() > MAX_SECRET {
            return Err(VaultError::Invalid(format!("a secret must be 1 to {MAX_SECRET} bytes")));
        }
        let sealed = seal(&self.data_key, &entry_aad(name, &self.file.data_key_id), s.as_bytes())?;
        self.file.entries.insert(name.to_owned(), Entry { set_at: now, sealed });
        self.save()
    }

    /// The secret stored under `name`.
    pub fn get(&self, name: &str) -> Result<Option<SecretString>, VaultError> {
        let Some(e) = self.file.entries.get(name) else { return Ok(None) };
        let tampered = || VaultError::Tampered { path: self.path.display().to_string(), name: name.to_owned() };
        let plain = open(&self.data_key, &entry_aad(name, &self.file.data_key_id), &e.sealed).ok_or_else(tampered)?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| tampered())?;
        Ok(Some(SecretString::from(text)))
    }

    /// Names and when each was set, sorted by name.
    pub fn list(&self) -> Vec<(String, i64)> {
        self.file.entries.iter().map(|(k, e)| (k.clone(), e.set_at)).collect()
    }

    /// Removes `name`; whether it was there.
    pub fn remove(&mut self, name: &str) -> Result<bool, VaultError> {
        if self.file.entries.remove(name).is_none() {
            return Ok(false);
        }
        self.save()?;
        Ok(true)
    }

    /// Where the master key came from, as recorded in the vault.
    pub fn sealed_with(&self) -> &str {
        &self.file.master.source
    }

    /// The id of the current data key (not secret: it names the key, it does not derive it).
    pub fn data_key_id(&self) -> &str {
        &self.file.data_key_id
    }

    /// The result cache's key: HKDF-SHA256 of the data key, so that rotating the data key
    /// makes every cache entry sealed before unreadable.
    pub fn cache_key(&self) -> Result<Zeroizing<[u8; 32]>, VaultError> {
        self.derive(AAD_CACHE_KEY)
    }

    /// The egress policy's keyed-hash key (mask rules `with: hash`): HKDF-SHA256 of the
    /// data key. It never leaves the agent; rotating the data key changes every hash.
    pub fn mask_key(&self) -> Result<Zeroizing<[u8; 32]>, VaultError> {
        self.derive(SALT_MASK_KEY)
    }

    fn derive(&self, salt: &str) -> Result<Zeroizing<[u8; 32]>, VaultError> {
        use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
        struct Len32;
        impl aws_lc_rs::hkdf::KeyType for Len32 {
            fn len(&self) -> usize {
                32
            }
        }
        let prk = Salt::new(HKDF_SHA256, salt.as_bytes()).extract(self.data_key.as_ref());
        let info: &[&[u8]] = &[self.file.data_key_id.as_bytes()];
        let mut key = Zeroizing::new([0u8; 32]);
        prk.expand(info, Len32)
            .and_then(|okm| okm.fill(key.as_mut()))
            .map_err(|_| VaultError::Invalid("key derivation failed".into()))?;
        Ok(key)
    }

    /// Replaces the data key with a new random one and re-seals every secret under it,
    /// in one atomic write of the vault file: a crash at any point leaves the vault
    /// sealed under the old key or the new one. Returns the old and new key ids. Nothing
    /// is written if any secret fails to open.
    pub fn rotate_data_key(&mut self) -> Result<(String, String), VaultError> {
        let new_key = Zeroizing::new(random::<32>()?);
        let new_id = hex(&random::<8>()?);
        let mut entries = BTreeMap::new();
        for name in self.file.entries.keys() {
            let secret = self.get(name)?.ok_or_else(|| VaultError::Invalid(format!("{name} vanished")))?;
            let at = self.file.entries[name].set_at;
            let sealed = seal(&new_key, &entry_aad(name, &new_id), secret.expose_secret().as_bytes())?;
            entries.insert(name.clone(), Entry { set_at: at, sealed });
        }
        let sealed_key = seal(&self.master, &format!("{AAD_DATA_KEY}\0{new_id}"), new_key.as_ref())?;
        let file = VaultFile {
            format: FORMAT,
            master: self.file.master.clone(),
            data_key_id: new_id.clone(),
            data_key: sealed_key,
            entries,
        };
        let old = std::mem::replace(&mut self.file, file);
        let old_key = std::mem::replace(&mut self.data_key, new_key);
        if let Err(e) = self.save() {
            self.file = old;
            self.data_key = old_key;
            return Err(e);
        }
        Ok((old.data_key_id, new_id))
    }

    /// Deletes temp files that an interrupted write of the vault left behind (they hold
    /// ciphertext only). Call with the vault lock held.
    pub fn remove_stale_temps(state_dir: &Path) -> usize {
        let prefix = format!(".{VAULT_FILE}.tmp.");
        let Ok(dir) = std::fs::read_dir(state_dir) else { return 0 };
        dir.filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .filter(|e| std::fs::remove_file(e.path()).is_ok())
            .count()
    }
}
