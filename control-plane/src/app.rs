//! The control plane's state and the operations behind both the CLI and the HTTP API:
//! `init`, enrolment tokens, API tokens, and job dispatch (sign + queue + wake).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use outpost_common::fsutil;
use outpost_protocol::encoding::{hex, sha256_hex};
use outpost_protocol::enrol::EnrolmentToken;
use outpost_protocol::ids::{new_job_id, new_nonce, random_bytes};
use outpost_protocol::job::validate_name;
use outpost_protocol::{sign_job, CacheSpec, JobSpec, Param, PROTOCOL_VERSION};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::auth::access::{self, Role, Scopes};
use crate::auth::embed::{EmbedKey, EmbedKeyError};
use crate::config::ControlPlaneConfig;
use crate::crypto::pki::{self, Ca};
use crate::crypto::sealing::{ResultCipher, SealError};
use crate::crypto::signing;
use crate::hub::Hub;
use crate::store::access::{AccessStore, ApiTokenRecord, UserRecord};
use crate::store::backend::Backend;
use crate::store::{EnrolTokenRecord, JobOrigin, NewJob, SqliteStore, Store, StoreError};

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
    let now = outpost_protocol::unix_now();
    let signing_key_id = signing::init(&store, data_dir, now).await?;
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
            created_at: outpost_protocol::unix_now(),
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
    pub sign_in_failures: crate::api::access::SignInThrottle,
    /// Password hashing in flight, bounded.
    pub passwords: crate::auth::password_work::PasswordWork,
    /// Single sign-on, when `oidc:` is configured.
    pub oidc: Option<crate::auth::oidc::Oidc>,
    /// Refused enrolment attempts per source address and per token id.
    pub enrol_throttle: crate::enrolment::EnrolThrottle,
    /// When each agent's audit head was last stored from a result.
    pub head_pace: crate::audit_heads::HeadPace,
    /// The schema browser's catalogs, per agent and connection, for `schema_cache_secs`.
    pub schema_cache: crate::api::schema::SchemaCache,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("data_dir", &self.cfg.data_dir).finish_non_exhaustive()
    }
}

/// Opens the store `cfg` names and loads keys for `cfg`.
pub async fn open(cfg: ControlPlaneConfig) -> Result<Arc<App>, AppError> {
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
    signing::ensure_ring(&store, &cfg.data_dir, outpost_protocol::unix_now()).await?;
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
    }))
}

/// Body of `POST /v1/jobs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchRequest {
    /// Target agent name.
    pub agent: String,
    /// Connection name on that agent.
    pub connection: String,
    /// SQL text.
    pub sql: String,
    /// Typed parameters.
    #[serde(default)]
    pub params: Vec<Param>,
    /// Render spec (parsed by [`crate::net::http::parse_render`] for field-precise errors).
    pub render: serde_json::Value,
    /// Cache instructions.
    #[serde(default)]
    pub cache: CacheSpec,
    /// Statement timeout asked for, seconds; the agent's own timeout caps it.
    #[serde(default)]
    pub timeout_secs: Option<u32>,
}

impl App {
    /// Creates an enrolment token bound to `agent` (joining `pool`, if given), valid for
    /// `ttl_secs`. Returns the token (shown once), its public id and its expiry.
    pub async fn create_enrolment_token(
        &self,
        agent: &str,
        pool: Option<&str>,
        ttl_secs: u64,
    ) -> Result<(String, String, i64), AppError> {
        validate_name(agent).map_err(|e| AppError::Usage(format!("agent name {agent:?}: {e}")))?;
        if let Some(p) = pool {
            validate_name(p).map_err(|e| AppError::Usage(format!("pool name {p:?}: {e}")))?;
        }
        if !(60..=7 * 86_400).contains(&ttl_secs) {
            return Err(AppError::Usage("ttl: must be between 1 minute and 7 days".into()));
        }
        let now = outpost_protocol::unix_now();
        let expires_at = now + i64::try_from(ttl_secs).unwrap_or(3600);
        let token = EnrolmentToken {
            addr: self.cfg.advertised_agent_address(&self.meta.hostname),
            server_name: self.meta.hostname.clone(),
            agent: agent.to_owned(),
            id: hex(&random_bytes::<8>()),
            secret: hex(&random_bytes::<32>()),
            ca_sha256: self.ca.pin(),
        };
        self.store
            .create_enrol_token(EnrolTokenRecord {
                id: token.id.clone(),
                agent: agent.to_owned(),
                pool: pool.map(str::to_owned),
                secret_sha256: sha256_hex(token.secret.as_bytes()),
                created_at: now,
                expires_at,
            })
            .await?;
        tracing::info!(token_id = %token.id, agent_id = %agent, pool = pool.unwrap_or(""), expires_at, "Enrolment token created.");
        Ok((token.encode(), token.id.clone(), expires_at))
    }

    /// Revokes `name`: its queued jobs fail, its connections are cut, and every later
    /// request with its certificate is refused. Returns the failed job ids, or `None`
    /// for an unknown agent.
    pub async fn revoke_agent(&self, name: &str) -> Result<Option<Vec<String>>, StoreError> {
        let pool = self.store.agent(name.to_owned()).await?.and_then(|a| a.pool);
        let failed = self.store.revoke_agent(name.to_owned(), outpost_protocol::unix_now()).await?;
        if let Some(p) = pool {
            // The pool's jobs it held went back to the pool: another member takes them now.
            self.hub.wake_agent(&format!("{}{p}", outpost_protocol::job::POOL_PREFIX));
        }
        if let Some(ids) = &failed {
            for id in ids {
                self.hub.job_done(id);
            }
            self.hub.revoke(name);
            tracing::warn!(agent_id = %name, failed_jobs = ids.len(), "Agent revoked.");
        }
        Ok(failed)
    }

    /// Appends `e` to the cloud audit log; a failure to write it is logged (the action it
    /// records has happened either way).
    pub async fn record_audit(&self, e: crate::store::access::AuditEvent) {
        let action = e.action.clone();
        if let Err(err) = self.store.add_audit(e).await {
            tracing::error!(error = %err, action = %action, "Could not write the audit record.");
        }
    }

    /// Records something the control plane itself did (actor `control-plane`), e.g. a job
    /// failed as `corrupt_job`.
    pub async fn audit_system(&self, action: &str, target: &str, detail: serde_json::Value) {
        self.record_audit(crate::store::access::AuditEvent {
            seq: 0,
            at: outpost_protocol::unix_now(),
            actor: "control-plane".into(),
            credential: "none".into(),
            action: action.into(),
            target: Some(target.into()),
            outcome: "failed".into(),
            status: 0,
            remote: None,
            detail: Some(detail),
        })
        .await;
    }

    /// Asks to stop a job: a queued one ends at once; a leased one's agent is woken to
    /// hear of it at its next poll answer.
    pub async fn cancel_job(&self, id: &str) -> Result<crate::store::CancelOutcome, StoreError> {
        use crate::store::CancelOutcome;
        let outcome = self.store.cancel_job(id.to_owned(), outpost_protocol::unix_now()).await?;
        match &outcome {
            CancelOutcome::Cancelled => {
                tracing::info!(job_id = %id, "Job cancelled before delivery.");
                self.hub.job_done(id);
            }
            CancelOutcome::Requested { agent } => {
                tracing::info!(job_id = %id, agent_id = %agent, "Cancel asked; telling the agent.");
                self.hub.wake_agent(agent);
            }
            CancelOutcome::AlreadyFinal(_) | CancelOutcome::NotFound => {}
        }
        Ok(outcome)
    }

    /// Deletes jobs and results that ended more than `older_than_secs` ago (and expired
    /// sessions), except the newest successful result of each project query while it is
    /// younger than `results.keep_latest_secs` (or `older_than_secs`, if longer); returns
    /// how many jobs went.
    pub async fn purge_results(&self, older_than_secs: u64) -> Result<usize, StoreError> {
        let now = outpost_protocol::unix_now();
        let ago = |secs: u64| now.saturating_sub(i64::try_from(secs).unwrap_or(i64::MAX));
        let keep_for = older_than_secs.max(self.cfg.results.keep_latest_secs);
        let n = self.store.purge(ago(older_than_secs), ago(keep_for), now).await?;
        if n > 0 {
            tracing::info!(jobs = n, "Deleted jobs and results past retention.");
        }
        Ok(n)
    }

    /// Deletes results past retention until shutdown, checking at a quarter of the
    /// retention (between 1 s and 5 min) so nothing outlives it by much.
    pub async fn retention_loop(&self) {
        let retention = self.cfg.results.retention_secs;
        let every = std::time::Duration::from_secs((retention / 4).clamp(1, 300));
        loop {
            if let Err(e) = self.purge_results(retention).await {
                tracing::error!(error = %e, "Could not delete results past retention.");
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = self.shutdown.cancelled() => return,
            }
        }
    }

    /// Validates, signs and queues a job, then wakes its agent. Returns the job id.
    /// Authorisation is the caller's: this signs whatever it is given.
    pub async fn dispatch(
        &self,
        req: DispatchRequest,
        origin: JobOrigin,
        requester: outpost_protocol::Requester,
        reveal_connections: bool,
    ) -> Result<(String, i64), crate::net::http::ApiError> {
        let render = crate::net::http::parse_render(req.render.clone())?;
        self.dispatch_spec(req, render, origin, requester, reveal_connections).await
    }

    /// [`dispatch`](Self::dispatch) with the render spec already parsed (`req.render` is
    /// ignored): how the control plane signs the jobs it makes itself, such as the
    /// schema browser's `catalog` jobs, which API clients cannot ask for.
    pub async fn dispatch_spec(
        &self,
        req: DispatchRequest,
        render: outpost_protocol::RenderSpec,
        origin: JobOrigin,
        requester: outpost_protocol::Requester,
        reveal_connections: bool,
    ) -> Result<(String, i64), crate::net::http::ApiError> {
        use crate::net::http::ApiError;
        outpost_protocol::job::validate_audience(&req.agent).map_err(|e| ApiError::bad_field("agent", e))?;
        validate_name(&req.connection).map_err(|e| ApiError::bad_field("connection", e))?;
        let pool = outpost_protocol::job::pool_of(&req.agent).map(str::to_owned);
        let targets = match &pool {
            // A pool exists while it has a member that is not revoked.
            Some(p) => {
                let live: Vec<_> =
                    self.store.pool_members(p.clone()).await?.into_iter().filter(|a| a.revoked_at.is_none()).collect();
                if live.is_empty() {
                    return Err(ApiError::bad_field("agent", format!("no enrolled agent is in pool {p:?}")));
                }
                live
            }
            None => match self.store.agent(req.agent.clone()).await? {
                Some(a) => vec![a],
                None => {
                    return Err(ApiError::bad_field("agent", format!("no enrolled agent is named {:?}", req.agent)));
                }
            },
        };
        known_connection(&targets, &req.agent, &req.connection, reveal_connections)?;
        let now = outpost_protocol::unix_now();
        let ttl = i64::try_from(self.cfg.jobs.ttl_secs).unwrap_or(300);
        let spec = JobSpec {
            version: PROTOCOL_VERSION,
            job_id: new_job_id(),
            audience: req.agent.clone(),
            issued_at: now,
            expires_at: now + ttl,
            nonce: new_nonce(),
            connection: req.connection.clone(),
            sql: req.sql,
            params: req.params,
            render,
            cache: req.cache,
            timeout_secs: req.timeout_secs,
            requester: Some(requester),
        };
        spec.check_shape().map_err(|m| {
            let (field, msg) = m.split_once(": ").unwrap_or(("job", m.as_str()));
            ApiError::bad_field(field, msg)
        })?;
        // The key ring may change under us (the CLI rotates keys while we serve): sign with
        // the key the store calls active, and sign again if it was retired meanwhile.
        let mut attempt = 0;
        let envelope = loop {
            let key_id = self.store.active_signing_key().await?.ok_or_else(|| {
                ApiError::internal("no active job-signing key; run `outpost-control-plane signing-key rotate`")
            })?;
            let key = self.signing_keys.get(&self.cfg.data_dir, &key_id).map_err(ApiError::internal)?;
            let envelope = sign_job(&spec, &key);
            let envelope_json = serde_json::to_string(&envelope).map_err(ApiError::internal)?;
            // The SQL, parameters and render spec are sealed before the store sees them.
            let envelope_json = self.results.seal_envelope(&spec.job_id, &envelope_json);
            let job = NewJob {
                id: spec.job_id.clone(),
                // A pool's job has no agent until a member leases it.
                agent: if pool.is_some() { String::new() } else { req.agent.clone() },
                pool: pool.clone(),
                connection: req.connection.clone(),
                envelope_json,
                key_id: key_id.clone(),
                created_at: now,
                expires_at: spec.expires_at,
                origin: origin.clone(),
            };
            match self.store.insert_job(job).await {
                Ok(()) => break envelope,
                Err(StoreError::KeyRetired { .. }) if attempt == 0 => {
                    self.signing_keys.forget(&key_id);
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.hub.wake_agent(&req.agent);
        tracing::info!(job_id = %spec.job_id, agent_id = %req.agent, key_id = %envelope.key_id, "Job signed and queued.");
        Ok((spec.job_id, spec.expires_at))
    }
}

/// Most wake-ups sent in one `NOTIFY` statement.
const MAX_WAKEUPS_PER_NOTIFY: usize = 256;

impl App {
    /// With a shared PostgreSQL store, carries wake-ups between replicas: this replica's
    /// are sent by `NOTIFY`, the others' arrive on a `LISTEN`ing connection and wake the
    /// long-polls and waiters here. That connection is re-opened with jittered backoff
    /// when it breaks, and every waiter is woken once it is back (notifications sent
    /// meanwhile are lost; the waiters re-read the store). Nothing to do on SQLite.
    pub fn start_replica_wakeups(self: &Arc<Self>) {
        let Backend::Postgres(pg) = &self.store else { return };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        self.hub.publish_to(tx);
        let publisher = pg.clone();
        tokio::spawn(async move {
            // Whatever queued while the last statement ran goes out in the next one: one
            // commit for many wake-ups under load (each NOTIFY transaction is a WAL flush).
            let mut batch = Vec::new();
            while rx.recv_many(&mut batch, MAX_WAKEUPS_PER_NOTIFY).await > 0 {
                if let Err(e) = publisher.notify_all(std::mem::take(&mut batch)).await {
                    tracing::warn!(error = %e, "Could not tell the other replicas of a wake-up; they see it at their next poll.");
                }
            }
        });
        let app = Arc::clone(self);
        let pg = pg.clone();
        tokio::spawn(async move {
            let mut backoff = outpost_common::backoff::Backoff::new(
                std::time::Duration::from_millis(200),
                std::time::Duration::from_secs(10),
            );
            loop {
                match pg.listen().await {
                    Ok((client, mut notes)) => {
                        backoff.reset();
                        tracing::info!(
                            channel = crate::store::postgres::HUB_CHANNEL,
                            "Listening for other replicas' wake-ups."
                        );
                        app.hub.wake_all();
                        loop {
                            tokio::select! {
                                note = notes.recv() => match note {
                                    Some(p) => {
                                        if !app.hub.apply_remote(&p) {
                                            tracing::debug!(payload = %p, "Ignored a wake-up that is not ours.");
                                        }
                                    }
                                    None => break,
                                },
                                () = app.shutdown.cancelled() => return,
                            }
                        }
                        drop(client);
                        tracing::warn!("Lost the connection that listens for other replicas' wake-ups; reconnecting.");
                    }
                    Err(e) => tracing::warn!(error = %e, "Cannot listen for other replicas' wake-ups; retrying."),
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                    () = app.shutdown.cancelled() => return,
                }
            }
        });
    }
}

/// Refuses a job for a connection that the addressed agent (or no member of the pool)
/// has, by the connection names they last reported (names only, never targets); the
/// names are listed only when `reveal` (an admin). An agent that has not reported yet is
/// given the benefit of the doubt: it fails the job itself.
fn known_connection(
    targets: &[crate::store::AgentRecord],
    agent: &str,
    connection: &str,
    reveal: bool,
) -> Result<(), crate::net::http::ApiError> {
    let reported: Vec<&crate::store::AgentRecord> = targets.iter().filter(|a| a.version.is_some()).collect();
    if reported.len() < targets.len() || reported.iter().any(|a| a.connections.iter().any(|c| c == connection)) {
        return Ok(());
    }
    let mut names: Vec<&str> = reported.iter().flat_map(|a| a.connections.iter().map(String::as_str)).collect();
    names.sort_unstable();
    names.dedup();
    let known = match (reveal, names.is_empty()) {
        (false, _) => "those shared with you are listed by GET /v1/agents".to_owned(),
        (true, true) => "its connections, as last reported: none".to_owned(),
        (true, false) => format!("its connections, as last reported: {}", names.join(", ")),
    };
    Err(crate::net::http::ApiError::bad_field(
        "connection",
        format!("{agent} has no connection {connection:?} ({known})"),
    ))
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
