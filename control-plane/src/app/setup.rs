//! Setting up a control plane: `init` makes the data dir (CA, server certificate,
//! signing key, database, admin token and password) and `meta.json`; API tokens are
//! issued here for `init`, the CLI and the API alike.

use std::path::Path;

use outpost_common::fsutil;
use serde::{Deserialize, Serialize};

use super::{AppError, DB_FILE, META_FILE};
use crate::auth::access::{self, Role, Scopes, API_TOKEN_PREFIX};
use crate::auth::embed::EmbedKey;
use crate::crypto::pki::{self, Ca};
use crate::crypto::sealing::ResultCipher;
use crate::store::access::{AccessStore, ApiTokenRecord, UserRecord};
use crate::store::backend::Backend;
use crate::store::{SqliteStore, StoreError};

/// What `init` records about the installation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// Name in the server certificate; agents verify it.
    pub hostname: String,
    /// Further names and addresses in the server certificate (`init --san`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_names: Vec<String>,
}

/// What `init` produced (its `Debug` never shows the token).
pub struct InitOutput {
    /// The admin API token, shown once.
    pub admin_token: zeroize::Zeroizing<String>,
    /// When the admin token expires, unix seconds.
    pub admin_token_expires_at: i64,
    /// The admin's first console password, shown once (only its Argon2id hash is stored).
    pub admin_password: zeroize::Zeroizing<String>,
    /// CA pin.
    pub ca_sha256: String,
    /// Job-signing key id.
    pub signing_key_id: String,
}

impl std::fmt::Debug for InitOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitOutput")
            .field("admin_token", &"[REDACTED]")
            .field("admin_password", &"[REDACTED]")
            .field("admin_token_expires_at", &self.admin_token_expires_at)
            .field("ca_sha256", &self.ca_sha256)
            .field("signing_key_id", &self.signing_key_id)
            .finish()
    }
}

/// Creates a new data dir with CA, server certificate, signing key, database (the
/// embedded one, or the PostgreSQL database `pg` names, which must be empty) and admin token.
pub async fn init(
    data_dir: &Path,
    hostname: &str,
    extra_names: &[String],
    pg: Option<&crate::store::postgres::PgOptions>,
) -> Result<InitOutput, AppError> {
    if hostname.is_empty() || hostname.len() > 253 || hostname.contains(['/', ' ']) {
        return Err(AppError::Usage(format!("--hostname {hostname:?} is not a host name or IP address")));
    }
    check_extra_names(extra_names)?;
    if data_dir.exists() && std::fs::read_dir(data_dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(AppError::DataDirExists(data_dir.to_owned()));
    }
    // A shared database is initialised once; the other replicas get a copy of this data dir.
    let shared = match pg {
        Some(opts) => {
            let s = crate::store::postgres::PgStore::open(opts).await?;
            if !s.users().await?.is_empty() {
                return Err(AppError::Usage(
                    "this PostgreSQL database is initialised already; give each further replica a copy of the \
                     first replica's data dir instead of running init again"
                        .into(),
                ));
            }
            Some(s)
        }
        None => None,
    };
    fsutil::create_private_dir(data_dir)?;
    let store = match shared {
        Some(s) => Backend::Postgres(Box::new(s)),
        None => Backend::Sqlite(SqliteStore::open(&data_dir.join(DB_FILE))?),
    };
    pki::init(data_dir, hostname, extra_names)?;
    let meta = Meta { hostname: hostname.to_owned(), extra_names: extra_names.to_vec() };
    write_meta(data_dir, &meta)?;
    let now = crate::clock::Clock::system().now();
    let signing_key_id = super::key_ring::init(&store, data_dir, now).await?;
    ResultCipher::load_or_create(data_dir)?;
    EmbedKey::load_or_create(data_dir)?;
    let admin_password = access::first_password();
    let hash = access::hash_password(&admin_password).map_err(|e| AppError::Usage(e.to_string()))?;
    let admin = UserRecord {
        id: access::new_id(),
        name: "admin".into(),
        role: Role::Admin,
        password_hash: Some(hash),
        created_at: now,
        disabled_at: None,
        last_sign_in: None,
    };
    store.create_user(admin.clone()).await?;
    let ttl_days = crate::config::DEFAULT_API_TOKEN_TTL_DAYS;
    let expires_at = now + i64::try_from(ttl_days * 86_400).unwrap_or(i64::MAX / 2);
    let (admin_token, _) = issue_api_token(&store, &admin.id, "init", Scopes::ALL, expires_at).await?;
    let ca = Ca::load(data_dir)?;
    Ok(InitOutput {
        admin_token,
        admin_token_expires_at: expires_at,
        admin_password,
        ca_sha256: ca.pin(),
        signing_key_id,
    })
}

/// Creates an API token for `user_id` with `scopes` (checked against the user's role at
/// every use); returns the secret (shown once; only its hash is stored) and the token id.
pub async fn issue_api_token(
    store: &Backend,
    user_id: &str,
    name: &str,
    scopes: Scopes,
    expires_at: i64,
) -> Result<(zeroize::Zeroizing<String>, String), StoreError> {
    let (secret, hash) = access::new_secret(API_TOKEN_PREFIX);
    let id = access::new_id();
    let stored = if scopes == Scopes::ALL { "*".to_owned() } else { scopes.to_stored() };
    store
        .add_token(ApiTokenRecord {
            id: id.clone(),
            token_sha256: hash,
            user_id: user_id.to_owned(),
            user: String::new(),
            name: name.to_owned(),
            scopes: stored,
            created_at: crate::clock::Clock::system().now(),
            expires_at: Some(expires_at),
            last_used: None,
            revoked_at: None,
        })
        .await?;
    Ok((secret, id))
}

/// Refuses an `--san` that is no host name or IP address.
pub fn check_extra_names(names: &[String]) -> Result<(), AppError> {
    for n in names {
        if n.is_empty() || n.len() > 253 || n.contains(['/', ' ', ':']) && n.parse::<std::net::IpAddr>().is_err() {
            return Err(AppError::Usage(format!("--san {n:?} is not a host name or IP address")));
        }
    }
    Ok(())
}

/// Writes `meta.json` (0600, atomically).
pub fn write_meta(data_dir: &Path, meta: &Meta) -> Result<(), AppError> {
    fsutil::write_atomic(&data_dir.join(META_FILE), &serde_json::to_vec_pretty(meta).unwrap_or_default(), 0o600)?;
    Ok(())
}

/// Reads `meta.json`.
pub fn load_meta(data_dir: &Path) -> Result<Meta, AppError> {
    let path = data_dir.join(META_FILE);
    let bytes = fsutil::read_capped_file(&path, 64 * 1024)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| AppError::Meta { path: path.display().to_string(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_init_output_never_prints_the_admin_token_or_password() {
        let out = super::InitOutput {
            admin_token: zeroize::Zeroizing::new("opat_secret-token-value".into()),
            admin_token_expires_at: 1,
            admin_password: zeroize::Zeroizing::new("first-password-value".into()),
            ca_sha256: "ab".into(),
            signing_key_id: "ed25519:k".into(),
        };
        let shown = format!("{out:?}");
        assert!(!shown.contains("secret-token-value") && shown.contains("[REDACTED]"), "{shown}");
        assert!(!shown.contains("first-password-value"), "{shown}");
    }
}
