//! The audit's file checks: modes of the config, state dir, keys and logs; secrets
//! written into agent.yaml in plain text; where the vault's master key comes from.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use super::Severity;
use crate::config::AgentConfig;

/// What a file's mode should be.
#[derive(Clone, Copy)]
pub(super) enum FileRule {
    /// agent.yaml: no one but owner and group may read; no one but the owner may write.
    ConfigFile,
    /// 0700.
    PrivateDir,
    /// 0600, and a key: readable by others is high.
    Secret,
    /// 0600, encrypted or without secrets: readable by others is medium.
    Private,
}

pub(super) fn check_mode(add: &mut impl FnMut(Severity, &str, String), path: &Path, what: &str, rule: FileRule) {
    let Ok(meta) = std::fs::metadata(path) else { return };
    let mode = meta.mode() & 0o7777;
    let shown = format!("{} (mode {mode:04o}, uid {} gid {})", path.display(), meta.uid(), meta.gid());
    match rule {
        FileRule::ConfigFile => {
            if mode & 0o022 != 0 {
                add(Severity::High, what, format!("{shown} can be changed by others: chmod 0640 (root:outpost)"));
            } else if mode & 0o004 != 0 {
                add(
                    Severity::Medium,
                    what,
                    format!(
                        "{shown} is readable by every user; it names databases and users: chmod 0640 (root:outpost)"
                    ),
                );
            }
        }
        FileRule::PrivateDir => {
            if mode & 0o077 != 0 {
                add(Severity::High, what, format!("{shown} is open to others: chmod 0700"));
            }
        }
        FileRule::Secret => {
            if mode & 0o077 != 0 {
                add(Severity::High, what, format!("{shown} is a private key readable by others: chmod 0600"));
            }
        }
        FileRule::Private => {
            if mode & 0o077 != 0 {
                add(Severity::Medium, what, format!("{shown} is readable by others: chmod 0600"));
            }
        }
    }
}

/// Why a line of agent.yaml looks like it holds a secret in plain text.
pub(super) fn plaintext_secret(line: &str) -> Option<&'static str> {
    let code = line.split('#').next().unwrap_or_default();
    if code.contains("-----BEGIN") {
        return Some("a PEM block (a private key?) written into agent.yaml");
    }
    // scheme://user:password@host
    if let Some(rest) = code.split("://").nth(1) {
        let authority = rest.split(['/', ' ', '"', '\'']).next().unwrap_or_default();
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            if userinfo.contains(':') {
                return Some("a URL with a password in it");
            }
        }
    }
    None
}

/// Where the vault's master key comes from, as the report says it; a key file's mode
/// and place are findings.
pub(super) fn master_key(cfg: &AgentConfig, add: &mut impl FnMut(Severity, &str, String)) -> String {
    let keys = cfg.vault_keys();
    match cfg.vault.master_key {
        crate::vault::MasterKeySource::Passphrase => {
            "a passphrase (Argon2id), asked at start or from the systemd credential outpost-vault-passphrase".to_owned()
        }
        crate::vault::MasterKeySource::Systemd => {
            format!("the systemd credential {} only", crate::vault::SYSTEMD_KEY)
        }
        source => {
            let file = &keys.key_file;
            if std::fs::metadata(file).is_ok() {
                check_mode(&mut *add, file, "master key file", FileRule::Secret);
                if file.starts_with(&cfg.state_dir) {
                    add(
                        Severity::Low,
                        "vault.master_key",
                        format!(
                            "the master key file {} sits beside the vault it opens; a copy of the state dir \
                             holds both. Prefer LoadCredentialEncrypted= (systemd credential {})",
                            file.display(),
                            crate::vault::SYSTEMD_KEY
                        ),
                    );
                }
            }
            match source {
                crate::vault::MasterKeySource::Auto => format!(
                    "the systemd credential {} when present, else the key file {}",
                    crate::vault::SYSTEMD_KEY,
                    file.display()
                ),
                _ => format!("the key file {}", file.display()),
            }
        }
    }
}
