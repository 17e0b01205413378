//! Where the vault's master key comes from: a systemd credential, a key file, or a
//! passphrase, in the order [`super::MasterKeySource`] says.

use std::path::{Path, PathBuf};

use outpost_common::fsutil;
use outpost_protocol::encoding::b64_encode;
use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

use super::seal::{random, stretch};
use super::{
    Argon2Params, MasterInfo, MasterKeySource, PassphrasePrompt, VaultError, ARGON2, KEY_FILE, SYSTEMD_KEY,
    SYSTEMD_PASSPHRASE,
};

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

/// The master key and a description of where it came from.
pub(super) fn master_key(
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
