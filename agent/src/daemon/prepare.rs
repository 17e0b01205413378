//! What `run` and a reload build from agent.yaml before jobs run: the connectors, the
//! vault and the result cache.

use std::collections::HashMap;

use super::RunError;
use crate::cache::Cache;
use crate::config::{AgentConfig, ConnectionKind};
use crate::connectors::mysql::MysqlConnector;
use crate::connectors::postgres::PostgresConnector;
use crate::connectors::sqlite::SqliteConnector;
use crate::connectors::{Connector, ServerSettings};

/// The default CA bundle for database TLS (Debian's, also at this path on most distributions).
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Builds the connectors, creating the sample database where configured; passwords come
/// from `vault` (opened by the caller when a connection names one).
pub fn prepare_connections(
    cfg: &AgentConfig,
    vault: Option<&crate::vault::Vault>,
) -> Result<HashMap<String, Connector>, RunError> {
    let mut out = HashMap::new();
    for (name, conn) in &cfg.connections {
        let name = name.as_str();
        let fail = |reason: String| RunError::Connection { name: name.to_owned(), reason };
        let connector = match conn.kind {
            ConnectionKind::Sqlite => {
                let path = cfg.in_state_dir(conn.path.as_deref().unwrap_or(std::path::Path::new("")));
                if conn.sample {
                    let created =
                        crate::connectors::sqlite::ensure_sample_db(&path).map_err(|e| fail(e.to_string()))?;
                    if created {
                        tracing::info!(connection = %name, path = %path.display(), "Sample database created.");
                    }
                }
                Connector::Sqlite(SqliteConnector::new(path))
            }
            ConnectionKind::Postgres | ConnectionKind::Mysql => {
                let password = match &conn.password_credential {
                    None => None,
                    Some(cred) => {
                        let vault = vault.ok_or_else(|| fail("the vault is not open".into()))?;
                        let secret = vault.get(cred).map_err(|e| fail(e.to_string()))?;
                        Some(secret.ok_or_else(|| {
                            fail(format!(
                                "password_credential {cred:?} is not in the vault; store it with: \
                                 outpost-agent credentials set {cred}"
                            ))
                        })?)
                    }
                };
                let ca_file = match conn.tls {
                    crate::config::DbTls::Disable => None,
                    crate::config::DbTls::VerifyFull => {
                        Some(conn.ca_file.clone().unwrap_or_else(|| SYSTEM_CA_BUNDLE.into()))
                    }
                };
                let pool =
                    usize::try_from(conn.pool_size.map_or(crate::config::DEFAULT_POOL_SIZE, |p| p.get())).unwrap_or(4);
                let settings = ServerSettings {
                    host: conn.host.clone().unwrap_or_default(),
                    port: conn.port.unwrap_or(if conn.kind == ConnectionKind::Mysql { 3306 } else { 5432 }),
                    database: conn.database.clone().unwrap_or_default(),
                    user: conn.user.clone().unwrap_or_default(),
                    password,
                    tls_ca: ca_file,
                    pool_size: pool,
                    allow_privileged: conn.allow_privileged,
                };
                let made = if conn.kind == ConnectionKind::Mysql {
                    MysqlConnector::new(settings).map(Connector::Mysql)
                } else {
                    PostgresConnector::new(settings).map(Connector::Postgres)
                };
                made.map_err(|e| fail(e.to_string()))?
            }
        };
        out.insert(name.to_owned(), connector);
    }
    Ok(out)
}

/// Whether `run` needs the vault: for the cache key or a connection's password.
pub(super) fn needs_vault(cfg: &AgentConfig) -> bool {
    cfg.cache_enabled() || cfg.masks_with_hash() || cfg.connections.values().any(|c| c.password_credential.is_some())
}

/// Opens (creating on first use) the vault, under its lock.
pub(super) fn open_vault(
    cfg: &AgentConfig,
    prompt: crate::vault::PassphrasePrompt<'_>,
) -> Result<crate::vault::Vault, RunError> {
    let _lock = crate::vault::StateLock::acquire(&cfg.state_dir, crate::vault::VAULT_LOCK)?;
    Ok(crate::vault::Vault::open_or_create(&cfg.state_dir, &cfg.vault_keys(), prompt)?)
}

/// Opens the result cache under a key derived from the vault's data key, and deletes the
/// entries past their max-age at `now` (unix seconds); `None` when policy turns caching off.
pub fn open_cache(cfg: &AgentConfig, vault: Option<&crate::vault::Vault>, now: i64) -> Result<Option<Cache>, RunError> {
    let Some(vault) = vault.filter(|_| cfg.cache_enabled()) else {
        return Ok(None);
    };
    let cache = Cache::open(&cfg.state_dir, &*vault.cache_key()?, vault.data_key_id(), cfg.cache.max_bytes.get())?;
    cache.sweep(&cfg.cache_caps(), now)?;
    Ok(Some(cache))
}
