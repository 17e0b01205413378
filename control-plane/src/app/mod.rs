//! The running control plane ([`App`]): what it holds (config, store, keys, wake-ups,
//! throttles, caches) and the operations behind both the CLI and the HTTP API — `init`
//! and the data dir ([`setup`]), the job-signing key ring in the store ([`key_ring`]),
//! job dispatch (sign + queue + wake, [`dispatch`]),
//! enrolment tokens, revocation, cancellation, retention and audit records
//! ([`operations`]), running a project with its owner's access ([`projects`]) and on its
//! schedule ([`schedules`]), wake-ups between replicas ([`replicas`]) and the schema browser's
//! catalogs ([`schema_cache`]).

mod dispatch;
pub mod key_ring;
mod operations;
pub mod project_choices;
pub mod project_jobs;
pub mod project_params;
pub mod project_tiles;
pub mod projects;
mod replicas;
pub mod schedules;
pub mod schema_cache;
mod setup;
pub mod viewer_runs;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use outpost_common::fsutil;
use tokio_util::sync::CancellationToken;

use crate::auth::embed::{EmbedKey, EmbedKeyError};
use crate::clock::Clock;
use crate::config::ControlPlaneConfig;
use crate::crypto::pki::{self, Ca};
use crate::crypto::sealing::{ResultCipher, SealError};
use crate::crypto::signing;
use crate::hub::Hub;
use crate::store::backend::Backend;
use crate::store::{SqliteStore, Store, StoreError};

pub use dispatch::DispatchRequest;
pub use setup::{check_extra_names, init, issue_api_token, load_meta, write_meta, InitOutput, Meta};

/// Database file in the data dir.
pub const DB_FILE: &str = "control-plane.db";
/// Metadata written by `init`.
pub const META_FILE: &str = "meta.json";
pub use crate::auth::access::API_TOKEN_PREFIX;

/// Control-plane failures outside request handling.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The data dir already exists.
    #[error("{0} already exists and is not empty; refusing to overwrite it (choose another --data-dir)")]
    DataDirExists(PathBuf),
    /// A file problem.
    #[error(transparent)]
    File(#[from] fsutil::FileError),
    /// PKI.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// Signing key.
    #[error(transparent)]
    Signing(#[from] signing::SigningError),
    /// The signing-key ring.
    #[error(transparent)]
    KeyRing(#[from] key_ring::KeyRingError),
    /// Store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Results key.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// Embed key.
    #[error(transparent)]
    Embed(#[from] EmbedKeyError),
    /// Single sign-on set-up (secret or CA file).
    #[error(transparent)]
    Oidc(#[from] crate::auth::oidc::OidcError),
    /// Bad metadata.
    #[error("{path}: {reason}")]
    Meta {
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
    /// Bad input from the operator.
    #[error("{0}")]
    Usage(String),
    /// The data dir was never made by `init` (or the path is wrong).
    #[error(
        "{} is not a control-plane data dir made by `init` (it has no {META_FILE}): create one with \
         `outpost-control-plane init --data-dir {} --hostname NAME`, or point --data-dir (or the config's \
         data_dir) at the one `init` made",
        .0.display(), .0.display()
    )]
    NotInitialised(PathBuf),
    /// The data dir is there but this user may not read it (made by another user).
    #[error(
        "{}: permission denied: the data dir belongs to another user. Run the command as the service's user \
         (sudo -u outpost-cp outpost-control-plane …), or give the directory back to it: \
         sudo chown -R outpost-cp:outpost-cp {}",
        .0.display(), .0.display()
    )]
    NotReadable(PathBuf),
}

/// Opens the store `pg` names, or the embedded database in `data_dir`.
pub async fn open_store(
    data_dir: &Path,
    pg: Option<&crate::store::postgres::PgOptions>,
) -> Result<Backend, StoreError> {
    Ok(match pg {
        Some(opts) => Backend::Postgres(Box::new(crate::store::postgres::PgStore::open(opts).await?)),
        None => Backend::Sqlite(SqliteStore::open(&data_dir.join(DB_FILE))?),
    })
}

/// Everything a running control plane holds.
pub struct App {
    /// Config.
    pub cfg: ControlPlaneConfig,
    /// Persistence.
    pub store: Backend,
    /// The CA.
    pub ca: Ca,
    /// Job-signing private keys, loaded as the key ring in the store names them.
    pub signing_keys: signing::KeyCache,
    /// Wake-ups.
    pub hub: Hub,
    /// Server certificate name.
    pub meta: Meta,
    /// Cancelled on shutdown; long-polls and waits end at once.
    pub shutdown: CancellationToken,
    /// Seals rendered results and job envelopes at rest.
    pub results: Arc<ResultCipher>,
    /// Signs and verifies embed tokens.
    pub embed: EmbedKey,
    /// Failed sign-ins per user name, to slow down password guessing.
    pub sign_in_failures: crate::auth::throttle::SignInThrottle,
    /// Password hashing in flight, bounded.
    pub passwords: crate::auth::password_work::PasswordWork,
    /// Single sign-on, when `oidc:` is configured.
    pub oidc: Option<crate::auth::oidc::Oidc>,
    /// Refused enrolment attempts per source address and per token id.
    pub enrol_throttle: crate::enrolment::EnrolThrottle,
    /// When each agent's audit head was last stored from a result.
    pub head_pace: crate::audit_heads::HeadPace,
    /// The schema browser's catalogs, per agent and connection, for `schema_cache_secs`.
    pub schema_cache: crate::app::schema_cache::SchemaCache,
    /// Where every wall-clock time comes from: the system clock, or a test's manual one.
    pub clock: Clock,
    /// Held from reading an agent's share of project refreshes
    /// (`schedules.max_queued_per_agent`) until the runs it lets in are queued, by viewers'
    /// runs and schedules alike: otherwise concurrent requests each see the same room and
    /// together queue past it. (Within this process; replicas each hold their own.)
    pub refresh_share: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("data_dir", &self.cfg.data_dir).finish_non_exhaustive()
    }
}

/// Opens the store `cfg` names and loads keys for `cfg`, on the system clock.
pub async fn open(cfg: ControlPlaneConfig) -> Result<Arc<App>, AppError> {
    open_with_clock(cfg, Clock::system()).await
}

/// [`open`] with the time taken from `clock` (tests pass a [`Clock::manual`] one).
pub async fn open_with_clock(cfg: ControlPlaneConfig, clock: Clock) -> Result<Arc<App>, AppError> {
    // Checked first: opening the store would otherwise create an empty database there.
    match std::fs::metadata(cfg.data_dir.join(META_FILE)) {
        Ok(m) if m.is_file() => {}
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(AppError::NotReadable(cfg.data_dir.clone()))
        }
        _ => return Err(AppError::NotInitialised(cfg.data_dir.clone())),
    }
    let store = open_store(&cfg.data_dir, cfg.pg_options().as_ref()).await?;
    let ca = Ca::load(&cfg.data_dir)?;
    key_ring::ensure_ring(&store, &cfg.data_dir, clock.now()).await?;
    let signing_keys = signing::KeyCache::default();
    // Fail at start, not at the first job, if the active key's file is missing or wrong.
    let active = store.active_signing_key().await?.unwrap_or_default();
    signing_keys.get(&cfg.data_dir, &active)?;
    let meta = load_meta(&cfg.data_dir)?;
    let (results, created) = ResultCipher::load_or_create(&cfg.data_dir)?;
    if created {
        tracing::info!(file = %cfg.data_dir.join(crate::crypto::sealing::RESULTS_KEY_FILE).display(), "Created the key that seals rendered results.");
    }
    let (embed, created) = EmbedKey::load_or_create(&cfg.data_dir)?;
    if created {
        tracing::info!(file = %cfg.data_dir.join(crate::auth::embed::EMBED_KEY_FILE).display(), "Created the embed-token signing key.");
    }
    let oidc = cfg.oidc.as_ref().map(crate::auth::oidc::Oidc::new).transpose()?;
    Ok(Arc::new(App {
        oidc,
        cfg,
        store,
        ca,
        signing_keys,
        hub: Hub::default(),
        meta,
        shutdown: CancellationToken::new(),
        results: Arc::new(results),
        embed,
        sign_in_failures: Default::default(),
        passwords: Default::default(),
        enrol_throttle: Default::default(),
        head_pace: Default::default(),
        schema_cache: Default::default(),
        clock,
        refresh_share: Default::default(),
    }))
}
