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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use outpost_common::fsutil::{self, FileError};
use outpost_protocol::encoding::{b64_decode, b64_encode, hex};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

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

/// How to find the master key.
#[derive(Debug, Clone)]
pub struct KeySettings {
    /// The source.
    pub source: MasterKeySource,
    /// The key file (absolute, or relative to the state dir).
    pub key_file: PathBuf,
    /// `$CREDENTIALS_DIRECTORY`, if set.
    pub credentials_dir: Option<PathBuf>,
}

impl KeySettings {
    /// The settings of `state_dir` with the process's `$CREDENTIALS_DIRECTORY`.
    pub fn from_env(source: MasterKeySource, key_file: Option<&Path>, state_dir: &Path) -> Self {
        let key_file = match key_file {
            Some(p) if p.is_absolute() => p.to_owned(),
            Some(p) => state_dir.join(p),
            None => state_dir.join(KEY_FILE),
        };
        Self { source, key_file, credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from) }
    }
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

fn random<const N: usize>() -> Result<[u8; N], VaultError> {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| VaultError::Invalid("the system random generator failed".into()))?;
    Ok(b)
}

fn seal(key: &[u8; 32], aad: &str, plaintext: &[u8]) -> Result<Sealed, VaultError> {
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| VaultError::Invalid("bad key".into()))?);
    let nonce = random::<NONCE_LEN>()?;
    let mut buf = plaintext.to_vec();
    k.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut buf)
        .map_err(|_| VaultError::Invalid("encryption failed".into()))?;
    Ok(Sealed { nonce: b64_encode(&nonce), ciphertext: b64_encode(&buf) })
}

/// `None` when the tag does not verify.
fn open(key: &[u8; 32], aad: &str, sealed: &Sealed) -> Option<Zeroizing<Vec<u8>>> {
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let nonce: [u8; NONCE_LEN] = b64_decode(&sealed.nonce).ok()?.try_into().ok()?;
    let mut buf = Zeroizing::new(b64_decode(&sealed.ciphertext).ok()?);
    let len = k.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut buf).ok()?.len();
    buf.truncate(len);
    Some(buf)
}

fn entry_aad(name: &str, data_key_id: &str) -> String {
    format!("{AAD_ENTRY}\0{name}\0{data_key_id}")
}

/// Parses a master key: 32 raw bytes, or 64 hex digits (whitespace around is ignored).
fn parse_key(bytes: &[u8], what: &str) -> Result<Zeroizing<[u8; 32]>, VaultError> {
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() == 32 {
        key.copy_from_slice(bytes);
        return Ok(key);
    }
    let text = std::str::from_utf8(bytes).map(str::trim).unwrap_or_default();
    if let Some(decoded) = outpost_protocol::encoding::unhex(text).filter(|d| d.len() == 32).map(Zeroizing::new) {
        key.copy_from_slice(&decoded);
        return Ok(key);
    }
    Err(VaultError::NoKey(format!("{what} must hold 32 bytes or 64 hex digits, it holds {} bytes", bytes.len())))
}

fn stretch(passphrase: &SecretString, p: &Argon2Params) -> Result<Zeroizing<[u8; 32]>, VaultError> {
    let salt = b64_decode(&p.salt).map_err(|e| VaultError::Invalid(format!("vault salt: {e}")))?;
    let params = argon2::Params::new(p.m_kib, p.t, p.p, Some(32))
        .map_err(|e| VaultError::Invalid(format!("Argon2 parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    a.hash_password_into(passphrase.expose_secret().as_bytes(), &salt, key.as_mut())
        .map_err(|e| VaultError::Invalid(format!("Argon2: {e}")))?;
    Ok(key)
}

/// The master key and a description of where it came from.
fn master_key(
    settings: &KeySettings,
    existing: Option<&MasterInfo>,
    prompt: PassphrasePrompt<'_>,
) -> Result<(Zeroizing<[u8; 32]>, MasterInfo, String), VaultError> {
    let systemd = |name: &str| settings.credentials_dir.as_ref().map(|d| d.join(name)).filter(|p| p.exists());
    let read_cred = |p: &Path| -> Result<Zeroizing<Vec<u8>>, VaultError> {
        // systemd makes credentials readable by the service user only; their mode is its business.
        Ok(Zeroizing::new(fsutil::read_capped_file(p, 1024)?))
    };
    match settings.source {
        MasterKeySource::Passphrase => {
            let params = match existing.and_then(|m| m.argon2.clone()) {
                Some(p) => p,
                None => Argon2Params { salt: b64_encode(&random::<16>()?), m_kib: ARGON2.0, t: ARGON2.1, p: ARGON2.2 },
            };
            let (pass, tried) = match systemd(SYSTEMD_PASSPHRASE) {
                Some(p) => {
                    let bytes = read_cred(&p)?;
                    let text = String::from_utf8(bytes.to_vec())
                        .map_err(|_| VaultError::NoKey(format!("{} is not UTF-8", p.display())))?;
                    (
                        SecretString::from(text.trim_end_matches(['\n', '\r']).to_owned()),
                        format!("systemd credential {}", p.display()),
                    )
                }
                None => (prompt(existing.is_none())?, "the passphrase typed".to_owned()),
            };
            if pass.expose_secret().is_empty() {
                return Err(VaultError::NoKey("the passphrase is empty".into()));
            }
            let key = stretch(&pass, &params)?;
            Ok((key, MasterInfo { source: "passphrase".into(), argon2: Some(params) }, tried))
        }
        MasterKeySource::Auto | MasterKeySource::Systemd => {
            if let Some(p) = systemd(SYSTEMD_KEY) {
                let key = parse_key(&read_cred(&p)?, &p.display().to_string())?;
                return Ok((
                    key,
                    MasterInfo { source: "systemd".into(), argon2: None },
                    format!("systemd credential {}", p.display()),
                ));
            }
            if settings.source == MasterKeySource::Systemd {
                return Err(VaultError::NoKey(format!(
                    "vault.master_key is systemd but $CREDENTIALS_DIRECTORY/{SYSTEMD_KEY} does not exist; \
                     add LoadCredentialEncrypted={SYSTEMD_KEY}:… to the unit"
                )));
            }
            key_file(settings, existing)
        }
        MasterKeySource::KeyFile => key_file(settings, existing),
    }
}

fn key_file(
    settings: &KeySettings,
    existing: Option<&MasterInfo>,
) -> Result<(Zeroizing<[u8; 32]>, MasterInfo, String), VaultError> {
    let path = &settings.key_file;
    let info = MasterInfo { source: "key_file".into(), argon2: None };
    let tried = format!("key file {}", path.display());
    if path.exists() {
        let bytes = Zeroizing::new(fsutil::read_private(path, 1024)?);
        return Ok((parse_key(&bytes, &path.display().to_string())?, info, tried));
    }
    if existing.is_some() {
        return Err(VaultError::NoKey(format!(
            "{} is missing, and the vault was sealed with a key; restore the key file from your backup \
             (a new key would not open the vault)",
            path.display()
        )));
    }
    let key = Zeroizing::new(random::<32>()?);
    if let Some(dir) = path.parent() {
        fsutil::create_private_dir(dir)?;
    }
    fsutil::write_private(path, key.as_ref())?;
    tracing::info!(path = %path.display(), "Created the vault's master key file (0600); back it up apart from the vault.");
    Ok((key, info, tried))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn no_prompt() -> PassphrasePrompt<'static> {
        &|_| Err(VaultError::NoKey("no terminal in tests".into()))
    }

    fn settings(dir: &Path, source: MasterKeySource, creds: Option<&Path>) -> KeySettings {
        KeySettings { source, key_file: dir.join(KEY_FILE), credentials_dir: creds.map(Path::to_owned) }
    }

    #[test]
    fn secrets_round_trip_never_appear_in_the_file_and_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = settings(dir.path(), MasterKeySource::Auto, None);
        let mut v = Vault::open_or_create(dir.path(), &s, no_prompt()).expect("create");
        v.set("warehouse", &SecretString::from("hunter2-canary".to_owned()), 100).expect("set");
        let text = std::fs::read_to_string(dir.path().join(VAULT_FILE)).expect("read");
        assert!(!text.contains("hunter2-canary"));
        use std::os::unix::fs::PermissionsExt;
        for f in [VAULT_FILE, KEY_FILE] {
            let mode = std::fs::metadata(dir.path().join(f)).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        let v = Vault::open(dir.path(), &s, no_prompt()).expect("reopen");
        assert_eq!(v.get("warehouse").expect("get").expect("some").expose_secret(), "hunter2-canary");
        assert_eq!(v.list(), vec![("warehouse".to_owned(), 100)]);
        assert!(!format!("{v:?}").contains("hunter2"));
    }

    #[test]
    fn a_wrong_key_is_a_clear_error_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = settings(dir.path(), MasterKeySource::Auto, None);
        let mut v = Vault::open_or_create(dir.path(), &s, no_prompt()).expect("create");
        v.set("db", &SecretString::from("x".to_owned()), 1).expect("set");
        let before = std::fs::read(dir.path().join(VAULT_FILE)).expect("read");
        fsutil::write_private(&dir.path().join(KEY_FILE), &[7u8; 32]).expect("swap key");
        let err = Vault::open(dir.path(), &s, no_prompt()).expect_err("wrong key");
        assert!(matches!(err, VaultError::WrongKey { .. }), "{err}");
        assert!(err.to_string().contains("key file"), "{err}");
        assert_eq!(std::fs::read(dir.path().join(VAULT_FILE)).expect("read"), before);
        // A missing key file is not silently replaced for an existing vault.
        std::fs::remove_file(dir.path().join(KEY_FILE)).expect("rm");
        let err = Vault::open(dir.path(), &s, no_prompt()).expect_err("no key");
        assert!(err.to_string().contains("restore the key file"), "{err}");
        assert!(!dir.path().join(KEY_FILE).exists());
    }

    #[test]
    fn a_systemd_credential_is_preferred_and_hex_is_accepted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let creds = tempfile::tempdir().expect("creds");
        std::fs::write(creds.path().join(SYSTEMD_KEY), format!("{}\n", "ab".repeat(32))).expect("cred");
        let s = settings(dir.path(), MasterKeySource::Auto, Some(creds.path()));
        let mut v = Vault::open_or_create(dir.path(), &s, no_prompt()).expect("create");
        assert_eq!(v.sealed_with(), "systemd");
        assert!(!dir.path().join(KEY_FILE).exists(), "no key file when systemd provides the key");
        v.set("db", &SecretString::from("pw".to_owned()), 1).expect("set");
        // Without the credential, the vault does not open with a (new) key file.
        let without = settings(dir.path(), MasterKeySource::KeyFile, None);
        let err = Vault::open(dir.path(), &without, no_prompt()).expect_err("no credential");
        assert!(err.to_string().contains("restore the key file"), "{err}");
    }

    #[test]
    fn a_passphrase_vault_opens_only_with_its_passphrase() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = settings(dir.path(), MasterKeySource::Passphrase, None);
        let good: PassphrasePrompt<'_> = &|_| Ok(SecretString::from("correct horse".to_owned()));
        let bad: PassphrasePrompt<'_> = &|_| Ok(SecretString::from("wrong horse".to_owned()));
        let mut v = Vault::open_or_create(dir.path(), &s, good).expect("create");
        v.set("db", &SecretString::from("pw".to_owned()), 1).expect("set");
        assert!(matches!(Vault::open(dir.path(), &s, bad), Err(VaultError::WrongKey { .. })));
        assert_eq!(
            Vault::open(dir.path(), &s, good).expect("open").get("db").expect("get").expect("some").expose_secret(),
            "pw"
        );
    }

    #[test]
    fn a_sealed_value_moved_to_another_name_does_not_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = settings(dir.path(), MasterKeySource::Auto, None);
        let mut v = Vault::open_or_create(dir.path(), &s, no_prompt()).expect("create");
        v.set("a", &SecretString::from("secret-a".to_owned()), 1).expect("set");
        v.set("b", &SecretString::from("secret-b".to_owned()), 1).expect("set");
        let path = dir.path().join(VAULT_FILE);
        let mut file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        file["entries"]["b"] = file["entries"]["a"].clone();
        fsutil::write_private(&path, &serde_json::to_vec(&file).expect("json")).expect("write");
        let v = Vault::open(dir.path(), &s, no_prompt()).expect("open");
        assert!(matches!(v.get("b"), Err(VaultError::Tampered { .. })));
        assert_eq!(v.get("a").expect("a").expect("some").expose_secret(), "secret-a");
    }

    #[test]
    fn rotating_the_data_key_keeps_every_secret_and_changes_the_cache_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = settings(dir.path(), MasterKeySource::Auto, None);
        let mut v = Vault::open_or_create(dir.path(), &s, no_prompt()).expect("create");
        v.set("a", &SecretString::from("secret-a".to_owned()), 7).expect("set");
        let before = std::fs::read(dir.path().join(VAULT_FILE)).expect("read");
        let (old_cache, old_id) = (v.cache_key().expect("key"), v.data_key_id().to_owned());
        let (from, to) = v.rotate_data_key().expect("rotate");
        assert_eq!((from.as_str(), to.as_str()), (old_id.as_str(), v.data_key_id()));
        assert_ne!(from, to);
        assert_ne!(*old_cache, *v.cache_key().expect("key"), "old cache entries become unreadable");
        let v = Vault::open(dir.path(), &s, no_prompt()).expect("reopen");
        assert_eq!(v.data_key_id(), to);
        assert_eq!(v.get("a").expect("a").expect("some").expose_secret(), "secret-a");
        assert_eq!(v.list(), vec![("a".to_owned(), 7)], "set-at times are kept");
        // The old file's sealed secret does not open under the new data key.
        let old: VaultFile = serde_json::from_slice(&before).expect("json");
        assert!(open(&v.data_key, &entry_aad("a", &to), &old.entries["a"].sealed).is_none());
    }

    #[test]
    fn the_run_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let held = StateLock::try_acquire(dir.path(), RUN_LOCK).expect("lock").expect("free");
        assert!(StateLock::try_acquire(dir.path(), RUN_LOCK).expect("lock").is_none());
        drop(held);
        assert!(StateLock::try_acquire(dir.path(), RUN_LOCK).expect("lock").is_some());
    }
}
