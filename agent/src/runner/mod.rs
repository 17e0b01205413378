//! `outpost-agent run`: the daemon loop.
//!
//! Dial out over mutual TLS, long-poll for jobs (the control plane answers the moment one
//! is queued), and for each job: verify the envelope against the trusted keys (see
//! [`crate::keys`]; a newer key set announced by the poll answer is fetched and checked
//! first),
//! audience and lifetime; run it on the named connection read-only within the local
//! limits; render it; write the audit record; upload the report. A job that fails
//! verification is reported `rejected` and never executed. When the control plane is
//! away the loop backs off with jitter and resumes by itself. At most
//! `limits.max_concurrent_jobs` jobs run at once. On shutdown it stops polling, lets
//! running jobs finish and report within a grace period, then returns.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use outpost_protocol::encoding::sha256_hex;
use outpost_protocol::wire::{
    DeliveredJob, Heartbeat, KeySetsResponse, PollResponse, PATH_HEARTBEAT, PATH_JOBS, PATH_KEY_SETS, PATH_POLL,
};
use outpost_protocol::{EgressAction, EgressDecision, JobOutcome, ResultReport, ResultStats, VerifyOptions};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::audit::{AuditLog, AuditRecord, KeySetRecord};
use crate::backoff::Backoff;
use crate::cache::Cache;
use crate::config::{AgentConfig, ConnectionKind};
use crate::connectors::mysql::MysqlConnector;
use crate::connectors::postgres::PostgresConnector;
use crate::connectors::sqlite::SqliteConnector;
use crate::connectors::Connector;
use crate::connectors::ServerSettings;
use crate::connectors::{QueryError, QueryLimits};
use crate::identity::{self, Identity};
use crate::keys::KeyTrust;
use crate::transport::{self, Transport};

mod catalog;
mod fetch;
mod reload;

/// Time running jobs get to finish and report after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Longest a clean stop waits for its last heartbeat.
const STOP_HEARTBEAT_WAIT: Duration = Duration::from_secs(3);
/// Longest a reload waits for its heartbeat before it reports itself done.
const RELOAD_HEARTBEAT_WAIT: Duration = Duration::from_secs(5);
/// Interval of heartbeats (version and connection names); the long-poll also marks the agent seen.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(60);
/// How long a report upload is retried past the job's expiry.
const UPLOAD_GRACE_SECS: i64 = 300;

/// Start-up failures of `run`.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Not enrolled or identity unreadable.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// The certificate has expired.
    #[error("this agent's certificate expired at {at}; it must be enrolled again: outpost-agent enroll --token TOKEN (create one with outpost-control-plane enrollment-token create --agent {agent})")]
    CertificateExpired {
        /// Expiry, RFC 3339.
        at: String,
        /// Agent name.
        agent: String,
    },
    /// TLS setup.
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    /// Audit log.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// A connection could not be prepared.
    #[error("connection {name}: {reason}")]
    Connection {
        /// Connection name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Replay store.
    #[error(transparent)]
    Replay(#[from] crate::replay::ReplayError),
    /// Signing keys.
    #[error("no job-signing key is trusted: none in agent.yaml and none received at enrolment")]
    NoKeys,
    /// The stored key set.
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyTrustError),
    /// The proxy settings.
    #[error("proxy: {0}")]
    Proxy(#[from] crate::proxy::ProxyConfigError),
    /// Another `run` holds the state dir.
    #[error("another outpost-agent run is using {0}; stop it first (systemctl stop outpost-agent)")]
    AlreadyRunning(String),
    /// The vault (whose data key derives the cache key) or its lock.
    #[error("vault: {0}")]
    Vault(#[from] crate::vault::VaultError),
    /// The result cache.
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    /// The local control socket.
    #[error("control socket STATE_DIR/agent.sock: {0}")]
    Control(std::io::Error),
    /// The metrics listener.
    #[error("{0}; change or remove metrics.listen in agent.yaml")]
    Metrics(std::io::Error),
}

/// Whether the control plane answered the last request; logs each change once, at
/// WARN (a first answer at start is INFO; the retries while it stays away are DEBUG).
#[derive(Debug, Default)]
struct Reachability(std::sync::atomic::AtomicU8);

/// [`Reachability`]'s states (0, the default, is "not tried yet").
const UP: u8 = 1;
const DOWN: u8 = 2;

impl Reachability {
    /// Records an answer; whether that is a change.
    fn ok(&self, peer: &str) -> bool {
        match self.0.swap(UP, std::sync::atomic::Ordering::SeqCst) {
            UP => false,
            DOWN => {
                tracing::warn!(%peer, "Control plane reachable again; waiting for jobs.");
                true
            }
            _ => {
                tracing::info!(%peer, "Control plane reachable; waiting for jobs.");
                true
            }
        }
    }

    /// Records a failure; whether that is a change.
    fn lost(&self, error: &dyn std::fmt::Display, retry_in: Duration) -> bool {
        let retry_in_ms = u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX);
        match self.0.swap(DOWN, std::sync::atomic::Ordering::SeqCst) {
            DOWN => {
                tracing::debug!(%error, retry_in_ms, "Control plane still unreachable.");
                false
            }
            UP => {
                tracing::warn!(%error, retry_in_ms, "Lost the control plane; reconnecting with backoff.");
                true
            }
            _ => {
                tracing::warn!(%error, retry_in_ms, "Cannot reach the control plane; retrying with backoff.");
                true
            }
        }
    }
}

/// What a SIGHUP reload replaces: the config and what is built from it. A job takes a
/// snapshot when it starts and keeps it to the end.
struct Live {
    cfg: AgentConfig,
    connections: HashMap<String, Connector>,
    /// Key of the egress policy's keyed hashes, when a mask rule asks for them.
    mask_key: Option<zeroize::Zeroizing<[u8; 32]>>,
}

struct Ctx {
    reachable: Reachability,
    /// The config in force and its connectors (replaced by a reload).
    live: std::sync::RwLock<Arc<Live>>,
    /// agent.yaml, read again on SIGHUP.
    config_path: Option<std::path::PathBuf>,
    metrics: Arc<crate::metrics::Metrics>,
    /// Progress of the poll loop, for the systemd watchdog.
    liveness: crate::service::Liveness,
    /// Jobs finished since start, for the status line.
    jobs_done: std::sync::atomic::AtomicU64,
    /// The enrolment record, updated by renewals.
    enrolment: std::sync::Mutex<identity::Enrolment>,
    /// The control plane's CA (pinned at enrolment).
    ca: rustls_pki_types::CertificateDer<'static>,
    agent: String,
    keys: std::sync::RwLock<KeyTrust>,
    /// The last key-set version refused, so that a refusal is logged and audited once.
    refused_key_set: std::sync::atomic::AtomicU64,
    transport: Transport,
    audit: AuditLog,
    seen: crate::replay::SeenJobs,
    /// The encrypted result cache; `None` when policy turns it off for every connection.
    cache: Option<Cache>,
    /// The jobs running now, each with the token that stops its query.
    running: std::sync::Mutex<HashMap<String, CancellationToken>>,
    /// When the daemon started (unix seconds).
    started_at: i64,
    /// Since when the control plane's reachability holds (unix seconds).
    reach_since: std::sync::atomic::AtomicI64,
    /// Why the last request to the control plane failed, while it is unreachable.
    last_error: std::sync::Mutex<Option<String>>,
    /// When the last job finished (unix seconds; 0: none since the start).
    last_job_at: std::sync::atomic::AtomicI64,
    /// One reload at a time (SIGHUP or the control socket).
    reload_lock: tokio::sync::Mutex<()>,
    /// The last reload's verdict.
    last_reload: std::sync::Mutex<Option<crate::control::ReloadOutcome>>,
}

impl Ctx {
    /// The config in force now.
    fn live(&self) -> Arc<Live> {
        Arc::clone(&self.live.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The status line systemd shows (`systemctl status outpost-agent`).
    fn status_line(&self) -> String {
        let running = self.running().len();
        let done = self.jobs_done.load(std::sync::atomic::Ordering::Relaxed);
        let peer = self.transport.addr();
        if self.reachable.0.load(std::sync::atomic::Ordering::SeqCst) == UP {
            format!("Connected to the control plane at {peer}; {running} job(s) running, {done} done since start")
        } else {
            format!("Control plane at {peer} unreachable, retrying with backoff; {running} job(s) running, {done} done since start")
        }
    }

    fn reachable(&self) {
        if self.reachable.ok(self.transport.addr()) {
            self.reach_since.store(outpost_protocol::unix_now(), std::sync::atomic::Ordering::Relaxed);
            *self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            self.metrics.reachable(true);
            crate::service::status(&self.status_line());
        }
    }

    fn unreachable(&self, error: &dyn std::fmt::Display, retry_in: Duration) {
        *self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error.to_string());
        if self.reachable.lost(error, retry_in) {
            self.reach_since.store(outpost_protocol::unix_now(), std::sync::atomic::Ordering::Relaxed);
            self.metrics.reachable(false);
            crate::service::status(&self.status_line());
        }
    }

    /// The connections of the config in force, sorted.
    fn connection_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.live().connections.keys().cloned().collect();
        names.sort();
        names
    }

    /// What `outpost-agent status` shows of the running daemon.
    fn daemon_status(&self) -> crate::control::DaemonStatus {
        use std::sync::atomic::Ordering::Relaxed;
        let reach = match self.reachable.0.load(std::sync::atomic::Ordering::SeqCst) {
            UP => crate::control::Reach::Connected,
            DOWN => crate::control::Reach::Unreachable,
            _ => crate::control::Reach::Connecting,
        };
        let last_job_at = self.last_job_at.load(Relaxed);
        crate::control::DaemonStatus {
            agent: self.agent.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            stopping: false,
            started_at: self.started_at,
            control_plane: self.transport.addr().to_owned(),
            reach,
            reach_since: self.reach_since.load(Relaxed),
            last_error: self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
            jobs_running: u64::try_from(self.running().len()).unwrap_or(u64::MAX),
            jobs_done: self.jobs_done.load(Relaxed),
            last_job_at: (last_job_at > 0).then_some(last_job_at),
            connections: self.connection_names(),
            last_reload: self.last_reload.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops the queries of the jobs named, where this agent runs them.
    fn cancel_jobs(&self, ids: &[String]) {
        let running = self.running();
        for id in ids {
            match running.get(id) {
                Some(token) => {
                    tracing::info!(job_id = %id, "The control plane asked to cancel the job; stopping its query.");
                    token.cancel();
                }
                None => tracing::debug!(job_id = %id, "Cancel asked for a job not running here; ignored."),
            }
        }
    }
}

/// Removes a job from [`Ctx::running`] when it ends, however it ends.
struct RunningGuard<'a> {
    ctx: &'a Ctx,
    id: String,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.ctx.running().remove(&self.id);
    }
}

/// Formats unix seconds as RFC 3339.
pub fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).map(|t| t.to_rfc3339()).unwrap_or_else(|| unix.to_string())
}

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
fn needs_vault(cfg: &AgentConfig) -> bool {
    cfg.cache_enabled() || cfg.masks_with_hash() || cfg.connections.values().any(|c| c.password_credential.is_some())
}

/// Opens (creating on first use) the vault, under its lock.
fn open_vault(cfg: &AgentConfig, prompt: crate::vault::PassphrasePrompt<'_>) -> Result<crate::vault::Vault, RunError> {
    let _lock = crate::vault::StateLock::acquire(&cfg.state_dir, crate::vault::VAULT_LOCK)?;
    Ok(crate::vault::Vault::open_or_create(&cfg.state_dir, &cfg.vault_keys(), prompt)?)
}

/// Opens the result cache under a key derived from the vault's data key; `None` when
/// policy turns caching off.
pub fn open_cache(cfg: &AgentConfig, vault: Option<&crate::vault::Vault>) -> Result<Option<Cache>, RunError> {
    let Some(vault) = vault.filter(|_| cfg.cache_enabled()) else {
        return Ok(None);
    };
    let cache = Cache::open(&cfg.state_dir, &*vault.cache_key()?, vault.data_key_id(), cfg.cache.max_bytes.get())?;
    cache.sweep(&cfg.cache_caps(), outpost_protocol::unix_now())?;
    Ok(Some(cache))
}

/// Runs until `shutdown` is cancelled. `prompt` asks for the vault passphrase when the
/// vault is sealed with one and no systemd credential holds it.
pub async fn run(
    cfg: AgentConfig,
    signals: Signals,
    prompt: crate::vault::PassphrasePrompt<'_>,
) -> Result<(), RunError> {
    let Signals { shutdown, reload, config_path } = signals;
    outpost_common::fsutil::create_private_dir(&cfg.state_dir).map_err(identity::IdentityError::from)?;
    let Some(_running) = crate::vault::StateLock::try_acquire(&cfg.state_dir, crate::vault::RUN_LOCK)? else {
        return Err(RunError::AlreadyRunning(cfg.state_dir.display().to_string()));
    };
    let identity = identity::load(&cfg.state_dir)?;
    let agent = identity.enrolment.agent.clone();
    if identity.enrolment.not_after < outpost_protocol::unix_now() {
        return Err(RunError::CertificateExpired { at: rfc3339(identity.enrolment.not_after), agent });
    }
    let keys = KeyTrust::load(&cfg, &identity.enrolment)?;
    if keys.trusted().is_empty() {
        return Err(RunError::NoKeys);
    }
    let addr = cfg.control_plane.address.clone().unwrap_or_else(|| identity.enrolment.address.clone());
    let route = crate::proxy::route_for(&cfg, &crate::proxy::no_prompt)?;
    let transport = Transport::new(addr, route, &identity.enrolment.server_name, transport::mtls_config(&identity)?)?;
    let vault = if needs_vault(&cfg) { Some(open_vault(&cfg, prompt)?) } else { None };
    let connections = prepare_connections(&cfg, vault.as_ref())?;
    crate::connectors::privileges::check_all_in_background(&connections);
    let audit = AuditLog::open(&cfg.audit_path())?;
    match crate::audit::Signer::from_pkcs8(identity.key.secret_der()) {
        Ok(signer) => audit.set_signer(signer).await?,
        Err(e) => {
            tracing::error!(error = %e, "The agent key cannot sign audit checkpoints; the log is chained but not signed.")
        }
    }
    let seen = crate::replay::SeenJobs::open(&cfg.state_dir)?;
    let control = crate::control::bind(&cfg.state_dir).map_err(RunError::Control)?;
    let cache = open_cache(&cfg, vault.as_ref())?;
    let mask_key = match (&vault, cfg.masks_with_hash()) {
        (Some(v), true) => Some(v.mask_key()?),
        _ => None,
    };
    drop(vault);
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let metrics_listener = match cfg.metrics.listen {
        Some(addr) => Some(crate::metrics::bind(addr).await.map_err(RunError::Metrics)?),
        None => None,
    };
    tracing::info!(
        agent_id = %agent,
        peer = %transport.addr(),
        keys = ?keys.trusted().ids().collect::<Vec<_>>(),
        key_set_version = keys.version(),
        connections = ?connections.keys().collect::<Vec<_>>(),
        cache = ?cfg.cache_caps(),
        metrics = ?metrics_listener.as_ref().and_then(|l| l.local_addr().ok()),
        "Agent starting."
    );
    let ctx = Arc::new(Ctx {
        reachable: Reachability::default(),
        live: std::sync::RwLock::new(Arc::new(Live { cfg, connections, mask_key })),
        config_path,
        metrics: Arc::clone(&metrics),
        liveness: crate::service::Liveness::default(),
        jobs_done: std::sync::atomic::AtomicU64::new(0),
        enrolment: std::sync::Mutex::new(identity.enrolment.clone()),
        ca: identity.ca.clone(),
        agent,
        keys: std::sync::RwLock::new(keys),
        refused_key_set: std::sync::atomic::AtomicU64::new(0),
        transport,
        audit,
        seen,
        cache,
        running: std::sync::Mutex::default(),
        started_at: outpost_protocol::unix_now(),
        reach_since: std::sync::atomic::AtomicI64::new(outpost_protocol::unix_now()),
        last_error: std::sync::Mutex::default(),
        last_job_at: std::sync::atomic::AtomicI64::new(0),
        reload_lock: tokio::sync::Mutex::new(()),
        last_reload: std::sync::Mutex::default(),
    });
    let renewal =
        tokio::spawn(renewal_loop(Arc::clone(&ctx), shutdown.clone()).instrument(tracing::info_span!("renewal")));
    let heartbeat =
        tokio::spawn(heartbeat_loop(Arc::clone(&ctx), shutdown.clone()).instrument(tracing::info_span!("heartbeat")));
    let sweeper = tokio::spawn(sweep_loop(Arc::clone(&ctx), shutdown.clone()).instrument(tracing::info_span!("cache")));
    let reloader = reload.map(|hups| {
        tokio::spawn(
            reload::reload_loop(Arc::clone(&ctx), hups, shutdown.clone()).instrument(tracing::info_span!("reload")),
        )
    });
    // `status` and `reload` of the command line ask the daemon here.
    // It answers until the very end (a draining agent says it is stopping), and its
    // socket goes before the run lock is let go.
    let control_stop = CancellationToken::new();
    let control = tokio::spawn(crate::control::serve(
        control,
        Arc::new(reload::Control(Arc::clone(&ctx), shutdown.clone())),
        control_stop.clone(),
    ));
    if let Some(listener) = metrics_listener {
        tokio::spawn(crate::metrics::serve(listener, metrics, shutdown.clone()));
    }
    let stall = Duration::from_secs(ctx.live().cfg.limits.long_poll_secs.get()) + WATCHDOG_STALL_MARGIN;
    let watchdog = crate::service::watchdog_interval().map(|every| {
        let ctx = Arc::clone(&ctx);
        let shutdown = shutdown.clone();
        tokio::spawn(async move { crate::service::watchdog(&ctx.liveness, every, stall, shutdown).await })
    });
    crate::service::ready(&ctx.status_line());
    poll_loop(Arc::clone(&ctx), shutdown).instrument(tracing::info_span!("transport")).await;
    crate::service::stopping();
    if let Some(w) = watchdog {
        w.abort();
    }
    if let Some(r) = reloader {
        r.abort();
    }
    sweeper.abort();
    heartbeat.abort();
    renewal.abort();
    // Seals the log's tail: a record removed or edited after this shows at `audit verify`.
    if let Err(e) = ctx.audit.checkpoint("shutdown").await {
        tracing::error!(error = %e, "Audit checkpoint at shutdown not written.");
    }
    // The control plane hears at once that this agent is gone (a job for it then says
    // it waits for the agent) and gets the head that covers the shutdown checkpoint.
    // Bounded: an unreachable control plane does not hold the stop up.
    let _ = tokio::time::timeout(STOP_HEARTBEAT_WAIT, send_heartbeat(&ctx, true)).await;
    control_stop.cancel();
    let _ = control.await;
    Ok(())
}

/// What stops and reloads `run`.
pub struct Signals {
    /// Cancelled on SIGTERM/SIGINT: no new jobs; running ones finish and report.
    pub shutdown: CancellationToken,
    /// SIGHUPs: read `config_path` again and apply it, or refuse it and keep the running one.
    pub reload: Option<tokio::signal::unix::Signal>,
    /// Where agent.yaml is.
    pub config_path: Option<std::path::PathBuf>,
}

impl Signals {
    /// Only a shutdown token: no reloads.
    pub fn shutdown_only(shutdown: CancellationToken) -> Self {
        Self { shutdown, reload: None, config_path: None }
    }
}

/// How long past a long-poll the poll loop may go without progress before the systemd
/// watchdog is no longer fed (connect and TLS timeouts, a slow answer).
const WATCHDOG_STALL_MARGIN: Duration = Duration::from_secs(60);

/// When to renew: at two thirds of the certificate's lifetime.
pub fn renew_at(issued_at: i64, not_after: i64) -> i64 {
    issued_at + (not_after - issued_at).max(0) * 2 / 3
}

/// Renews the certificate at two thirds of its lifetime, with a new key pair each time,
/// over the current mutual-TLS identity; jobs in flight are not disturbed.
async fn renewal_loop(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
    loop {
        let (issued_at, not_after) = {
            let e = ctx.enrolment.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            (e.cert_issued_at, e.not_after)
        };
        let wait = renew_at(issued_at, not_after) - outpost_protocol::unix_now();
        if wait > 0 {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(u64::try_from(wait).unwrap_or(0))) => {}
                () = shutdown.cancelled() => return,
            }
        }
        match renew(&ctx).await {
            Ok(new_not_after) => {
                backoff.reset();
                tracing::info!(not_after = %rfc3339(new_not_after), "Certificate renewed with a new key pair.");
            }
            Err(e) => {
                let delay = backoff.next_delay();
                if outpost_protocol::unix_now() >= not_after {
                    tracing::error!(
                        error = %e,
                        expired_at = %rfc3339(not_after),
                        "Certificate expired before it could be renewed; enrol again: outpost-agent enroll --token TOKEN"
                    );
                } else {
                    tracing::warn!(
                        error = %e,
                        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(0),
                        "Certificate renewal failed; retrying."
                    );
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }
}

async fn renew(ctx: &Ctx) -> Result<i64, String> {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
    use rustls_pki_types::pem::PemObject as _;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, ctx.agent.as_str());
    params.distinguished_name = dn;
    let csr_pem = params.serialize_request(&key).and_then(|c| c.pem()).map_err(|e| e.to_string())?;
    let body = serde_json::to_vec(&outpost_protocol::wire::RenewRequest { csr_pem }).map_err(|e| e.to_string())?;
    let (status, bytes) = ctx
        .transport
        .send(Method::POST, outpost_protocol::wire::PATH_RENEW, Some(Bytes::from(body)))
        .await
        .map_err(|e| e.to_string())?;
    if status != StatusCode::OK {
        return Err(format!("control plane answered {status}: {}", String::from_utf8_lossy(&bytes)));
    }
    let res: outpost_protocol::wire::RenewResponse = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let cert = rustls_pki_types::CertificateDer::from_pem_slice(res.certificate_pem.as_bytes())
        .map_err(|e| format!("certificate: {e}"))?;
    crate::enrol::check_certificate(&cert, &ctx.agent, key.public_key_raw()).map_err(|e| e.to_string())?;
    let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
    let mut enrolment = ctx.enrolment.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    enrolment.not_after = res.not_after;
    enrolment.cert_issued_at = outpost_protocol::unix_now();
    identity::save_renewal(&ctx.live().cfg.state_dir, &key_pem, &res.certificate_pem, &enrolment)
        .map_err(|e| e.to_string())?;
    *ctx.enrolment.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = enrolment.clone();
    let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signer = crate::audit::Signer::from_pkcs8(key_der.secret_der());
    let id = Identity { enrolment, cert, key: key_der, ca: ctx.ca.clone() };
    let config = transport::mtls_config(&id).map_err(|e| e.to_string())?;
    // New connections present the new certificate first, then checkpoints and audit heads
    // are signed by its key (`audit verify` names each key): the control plane checks a
    // head against the certificate of the connection it came on.
    ctx.transport.set_config(config).await;
    match signer {
        Ok(signer) => {
            if let Err(e) = ctx.audit.set_signer(signer).await {
                tracing::error!(error = %e, "Audit checkpoints keep the previous key.");
            }
        }
        Err(e) => tracing::error!(error = %e, "The renewed key cannot sign audit checkpoints."),
    }
    Ok(res.not_after)
}

/// How often expired cache entries are deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Deletes cache entries past their connection's max-age: expired results are gone from
/// the disk within `SWEEP_EVERY`, not merely ignored.
async fn sweep_loop(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let Some(cache) = ctx.cache.clone() else { return };
    loop {
        tokio::select! {
            () = tokio::time::sleep(SWEEP_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
        // The caps in force now: a reload that shortens a max-age deletes at the next sweep.
        let (cache, caps) = (cache.clone(), ctx.live().cfg.cache_caps());
        match tokio::task::spawn_blocking(move || cache.sweep(&caps, outpost_protocol::unix_now())).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::debug!(entries = n, "Deleted expired cache entries."),
            Ok(Err(e)) => tracing::warn!(error = %e, "Cache sweep failed."),
            Err(e) => tracing::warn!(error = %e, "Cache sweep task failed."),
        }
    }
}

/// Tells the control plane the version, the connection names (rebuilt each time: a
/// reload may have changed them) and the audit head.
async fn heartbeat(ctx: &Ctx) {
    send_heartbeat(ctx, false).await;
}

/// [`heartbeat`], `stopping` when it is the last one before a clean exit.
async fn send_heartbeat(ctx: &Ctx, stopping: bool) {
    let connections = ctx.connection_names();
    let body = Bytes::from(
        serde_json::to_vec(&Heartbeat {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            connections,
            audit_head: ctx.audit.head(),
            stopping,
        })
        .unwrap_or_default(),
    );
    match ctx.transport.send(Method::POST, PATH_HEARTBEAT, Some(body)).await {
        Ok((StatusCode::OK, _)) => ctx.reachable(),
        Ok((status, b)) => tracing::warn!(%status, body = %String::from_utf8_lossy(&b), "Heartbeat refused."),
        Err(e) => tracing::debug!(error = %e, "Heartbeat failed."),
    }
}

async fn heartbeat_loop(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    loop {
        heartbeat(&ctx).await;
        tokio::select! {
            () = tokio::time::sleep(HEARTBEAT_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

async fn poll_loop(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    // Both are read once: a reload that changes them is refused (restart to apply).
    let limit = usize::try_from(ctx.live().cfg.limits.max_concurrent_jobs.get()).unwrap_or(4);
    let permits = Arc::new(Semaphore::new(limit));
    let mut running = JoinSet::new();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(15));
    let wait = ctx.live().cfg.limits.long_poll_secs.get();
    loop {
        ctx.liveness.beat();
        while running.try_join_next().is_some() {}
        // With every slot busy the agent still polls, with max=0: the answer then carries
        // only cancels of the jobs it runs. That poll is dropped when a job ends, so a
        // free slot asks for work at once (a max=0 poll leases nothing, so nothing is lost).
        let max = permits.available_permits();
        let path = format!("{PATH_POLL}?wait={wait}&max={max}");
        let res = tokio::select! {
            r = ctx.transport.send(Method::GET, &path, None) => r,
            Some(_) = running.join_next(), if max == 0 => continue,
            () = shutdown.cancelled() => break,
        };
        let delay = match res {
            Ok((StatusCode::OK, body)) => match serde_json::from_slice::<PollResponse>(&body) {
                Ok(poll) => {
                    ctx.reachable();
                    backoff.reset();
                    // Before any of these jobs is verified: they may be signed by a key
                    // that only the newer key set names.
                    sync_key_set(&ctx, poll.key_set_version).await;
                    ctx.cancel_jobs(&poll.cancel);
                    for job in poll.jobs {
                        let Some(p) = Arc::clone(&permits).try_acquire_owned().ok() else {
                            tracing::error!(job_id = %job.job_id, "More jobs delivered than asked for; the lease will hand it out again.");
                            continue;
                        };
                        let ctx = Arc::clone(&ctx);
                        let span = tracing::info_span!("job", job_id = %job.job_id);
                        running.spawn(
                            async move {
                                process(&ctx, job).await;
                                drop(p);
                            }
                            .instrument(span),
                        );
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Control plane sent an invalid poll answer.");
                    backoff.next_delay()
                }
            },
            Ok((status, body)) => {
                let msg = String::from_utf8_lossy(&body);
                let delay = backoff.next_delay();
                if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED {
                    // Logged each time (at error: nothing works until someone acts), and
                    // `status` says it instead of "connected".
                    tracing::error!(
                        %status,
                        body = %msg,
                        "The control plane refused this agent (revoked or unknown); enrol it again: outpost-agent enroll --token TOKEN"
                    );
                    // Its code and one line for a human, not the raw body.
                    let said = serde_json::from_slice::<outpost_protocol::wire::ErrorBody>(&body)
                        .map(|e| format!("{}: {}", e.code, e.message))
                        .unwrap_or_else(|_| msg.chars().take(200).collect());
                    let reason = format!("the control plane refused this agent ({}): {said}", status.as_u16());
                    ctx.unreachable(&reason, delay);
                } else {
                    tracing::warn!(%status, body = %msg, "Poll refused.");
                }
                delay
            }
            Err(e) => {
                let d = backoff.next_delay();
                ctx.unreachable(&e, d);
                d
            }
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => break,
        }
    }
    while running.try_join_next().is_some() {}
    if !running.is_empty() {
        tracing::info!(jobs = running.len(), "Waiting for running jobs to finish and report.");
        let drained =
            tokio::time::timeout(SHUTDOWN_GRACE, async { while running.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                jobs = running.len(),
                "Shutdown grace period over; abandoning running jobs (their leases will expire)."
            );
        }
    }
}

fn read_keys(ctx: &Ctx) -> std::sync::RwLockReadGuard<'_, KeyTrust> {
    ctx.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Brings the trusted keys up to the control plane's key-set `version`: fetches the
/// statements after the one held and applies them in order, each verified against the
/// keys trusted at that moment. Every change, and every refusal, is an audit record; a
/// refusal leaves the keys as they were (jobs signed by a key not trusted are rejected).
async fn sync_key_set(ctx: &Ctx, version: u64) {
    use std::sync::atomic::Ordering;
    let (wants, mode, held) = {
        let k = read_keys(ctx);
        (k.wants(version), k.mode(), k.version())
    };
    if !wants {
        if mode == crate::config::KeyTrustMode::PinnedOnly
            && version > held
            && version > ctx.refused_key_set.swap(version, Ordering::SeqCst)
        {
            tracing::warn!(
                key_set_version = version,
                "The control plane published key set {version}; key_trust is pinned_only, so it is not used. \
                 Jobs signed by keys missing from trusted_keys will be rejected."
            );
            audit_key_set(ctx, "refused", version, Some("pinned_only".into()), None).await;
        }
        return;
    }
    loop {
        let held = read_keys(ctx).version();
        let path = format!("{PATH_KEY_SETS}?after={held}");
        let statements = match ctx.transport.send(Method::GET, &path, None).await {
            Ok((StatusCode::OK, body)) => match serde_json::from_slice::<KeySetsResponse>(&body) {
                Ok(r) => r.statements,
                Err(e) => {
                    tracing::warn!(error = %e, "Control plane sent an invalid key-set answer.");
                    return;
                }
            },
            Ok((status, body)) => {
                tracing::warn!(%status, body = %String::from_utf8_lossy(&body), "Key-set fetch refused.");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Key-set fetch failed; the next poll tries again.");
                return;
            }
        };
        if statements.is_empty() {
            return;
        }
        for statement in &statements {
            let offered = statement.unverified().map(|s| s.version).unwrap_or(0);
            let result = ctx.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner).apply(statement);
            match result {
                Ok(applied) => {
                    tracing::info!(
                        key_set_version = applied.version,
                        added = ?applied.added,
                        removed = ?applied.removed,
                        signed_by = ?applied.signed_by,
                        "Job-signing keys updated from a signed key set."
                    );
                    audit_key_set(ctx, "accepted", applied.version, None, Some(applied)).await;
                }
                Err(e) => {
                    if offered > ctx.refused_key_set.swap(offered, Ordering::SeqCst) {
                        tracing::error!(
                            key_set_version = offered,
                            reason = e.code(),
                            error = %e,
                            "Refused a key-set update; the trusted keys stay as they were."
                        );
                        audit_key_set(ctx, "refused", offered, Some(e.code().into()), None).await;
                    }
                    return;
                }
            }
        }
        if read_keys(ctx).version() >= version {
            return;
        }
    }
}

async fn audit_key_set(
    ctx: &Ctx,
    verdict: &'static str,
    version: u64,
    reason: Option<String>,
    applied: Option<crate::keys::Applied>,
) {
    let applied =
        applied.unwrap_or(crate::keys::Applied { version, added: vec![], removed: vec![], signed_by: vec![] });
    let rec = KeySetRecord {
        event: "key_set",
        ts: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        verdict,
        version,
        reason,
        added: applied.added,
        removed: applied.removed,
        signed_by: applied.signed_by,
    };
    if let Err(e) = ctx.audit.record(&rec).await {
        tracing::error!(error = %e, "Audit record of a key-set change not written.");
    }
}

async fn process(ctx: &Ctx, job: DeliveredJob) {
    if !outpost_protocol::ids::is_job_id(&job.job_id) {
        // Not even a report can name such a job (its lease runs out on the control plane),
        // but the audit log still shows it arrived.
        tracing::error!(job_id = ?job.job_id, "Control plane delivered a job with an invalid id; ignored.");
        let mut rec = audit_base(&job);
        rec.job_id = job.job_id.chars().take(64).collect();
        rec.reason = Some("malformed".into());
        if let Err(e) = ctx.audit.record(&rec).await {
            tracing::error!(error = %e, "Audit record not written.");
        }
        ctx.metrics.job(&rec);
        return;
    }
    let started = Instant::now();
    let cancel = CancellationToken::new();
    ctx.running().insert(job.job_id.clone(), cancel.clone());
    let registered = RunningGuard { ctx, id: job.job_id.clone() };
    ctx.metrics.running(1);
    crate::service::status(&ctx.status_line());
    let (mut report, mut rec, upload_until) = execute(ctx, &job, cancel).await;
    let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report.stats.duration_ms = elapsed;
    rec.duration_ms = elapsed;
    // A failure's message leaves too: the ledger counts and hashes it like a body.
    if let Some(reason) = &report.reason {
        rec.bytes_sent = reason.message.len() as u64;
        rec.error_sha256 = Some(sha256_hex(reason.message.as_bytes()));
    }
    if let Err(e) = ctx.audit.record(&rec).await {
        tracing::error!(error = %e, "Audit record not written; the result is withheld.");
        report = ResultReport::refused(
            &job.job_id,
            JobOutcome::Failed,
            "audit_failed",
            "the agent could not write its audit log; the result was withheld".into(),
            ResultStats::default(),
        );
    }
    ctx.metrics.job(&rec);
    // How far the audit log now reaches (this job's record included), signed.
    report.audit_head = ctx.audit.head();
    upload(ctx, &report, upload_until).await;
    ctx.metrics.running(-1);
    ctx.jobs_done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ctx.last_job_at.store(outpost_protocol::unix_now(), std::sync::atomic::Ordering::Relaxed);
    drop(registered);
    crate::service::status(&ctx.status_line());
}

/// A parameter's type as the job names it.
fn param_type(p: &outpost_protocol::Param) -> &'static str {
    match p {
        outpost_protocol::Param::Null => "null",
        outpost_protocol::Param::Bool(_) => "bool",
        outpost_protocol::Param::Int(_) => "int",
        outpost_protocol::Param::Float(_) => "float",
        outpost_protocol::Param::Text(_) => "text",
    }
}

fn audit_base(job: &DeliveredJob) -> AuditRecord {
    AuditRecord {
        event: "job",
        ts: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        job_id: job.job_id.clone(),
        key_id: Some(job.envelope.key_id.clone()),
        verdict: "rejected",
        outcome: "rejected",
        reason: None,
        connection: None,
        sql_sha256: None,
        requester: None,
        sql: None,
        param_types: Vec::new(),
        params: None,
        rows_read: 0,
        cache: None,
        bytes_sent: 0,
        body_sha256: None,
        error_sha256: None,
        truncated: false,
        egress: Vec::new(),
        duration_ms: 0,
    }
}

async fn execute(ctx: &Ctx, job: &DeliveredJob, cancel: CancellationToken) -> (ResultReport, AuditRecord, i64) {
    let mut rec = audit_base(job);
    let live = ctx.live();
    let now = outpost_protocol::unix_now();
    let reject = |rec: &mut AuditRecord, code: &str, message: String| {
        tracing::warn!(reason = code, error = %message, "Job rejected.");
        rec.reason = Some(code.to_owned());
        ResultReport::refused(&job.job_id, JobOutcome::Rejected, code, message, ResultStats::default())
    };
    let pool = ctx.enrolment.lock().map(|e| e.pool.clone()).unwrap_or_default();
    let opts = VerifyOptions {
        audience: ctx.agent.clone(),
        pool,
        now,
        max_lifetime_secs: i64::try_from(live.cfg.limits.max_job_lifetime_secs.get()).unwrap_or(600),
        clock_skew_secs: i64::try_from(live.cfg.limits.clock_skew_secs.get()).unwrap_or(60),
    };
    let verified = job.envelope.verify(read_keys(ctx).trusted(), &opts);
    let verified = match verified {
        Ok(v) => v,
        Err(e) => return (reject(&mut rec, e.code(), e.to_string()), rec, now + UPLOAD_GRACE_SECS),
    };
    let spec = verified.spec;
    let upload_until = spec.expires_at + UPLOAD_GRACE_SECS;
    if spec.job_id != job.job_id {
        let msg = format!("delivered as job {} but the signed job id is {}", job.job_id, spec.job_id);
        return (reject(&mut rec, "malformed", msg), rec, upload_until);
    }
    let keep_until = spec.expires_at.saturating_add(opts.clock_skew_secs);
    match ctx.seen.check_and_record(&spec.job_id, &spec.nonce, keep_until, now).await {
        Ok(()) => {}
        Err(e @ crate::replay::ReplayError::Replayed { .. }) => {
            return (reject(&mut rec, "replayed", e.to_string()), rec, upload_until)
        }
        Err(e) => return (reject(&mut rec, "replay_store_failed", e.to_string()), rec, upload_until),
    }
    rec.verdict = "accepted";
    rec.connection = Some(spec.connection.clone());
    rec.sql_sha256 = Some(sha256_hex(spec.sql.as_bytes()));
    // Who ran what: the signed requester, the statement and its parameters' types.
    rec.requester.clone_from(&spec.requester);
    if live.cfg.audit.sql_text == crate::config::SqlText::Full {
        rec.sql = Some(spec.sql.clone());
    }
    rec.param_types = spec.params.iter().map(param_type).collect();
    if live.cfg.audit.param_values {
        rec.params = serde_json::to_value(&spec.params).ok();
    }
    tracing::info!(key_id = %verified.key_id, connection = %spec.connection, "Job verified.");
    let Some(conn) = live.connections.get(&spec.connection) else {
        rec.outcome = "rejected";
        let msg = format!("this agent has no connection named {:?}", spec.connection);
        return (reject(&mut rec, "unknown_connection", msg), rec, upload_until);
    };
    let policy = live.cfg.egress_policy(&spec.connection);
    if let Err(decision) = policy.check_spec(&spec.render) {
        rec.outcome = "rejected";
        let report = reject(&mut rec, "egress_refused", decision.detail.clone());
        return (with_decisions(report, &mut rec, vec![decision]), rec, upload_until);
    }
    // A catalog job runs the agent's own metadata statements, not the job's SQL (it has
    // none), and skips the result cache; its answer is egress like any result.
    if let outpost_protocol::RenderSpec::Catalog(caps) = spec.render {
        let timeout = live.cfg.query_timeout(&spec.connection, spec.timeout_secs);
        let limits = QueryLimits { max_rows: 0, timeout, cancel, provenance: false, conditions: false };
        let report = catalog::execute(conn, caps, &policy, limits, &mut rec, &job.job_id).await;
        return (report, rec, upload_until);
    }
    let max_rows = usize::try_from(live.cfg.limits.max_rows.get()).unwrap_or(10_000);
    let limits = QueryLimits {
        max_rows,
        timeout: live.cfg.query_timeout(&spec.connection, spec.timeout_secs),
        cancel,
        provenance: policy.needs_provenance(),
        conditions: policy.needs_provenance() && policy.masked_predicates == crate::policy::MaskedPredicates::Refuse,
    };
    // `logged`: what the log may show of `message` (`None`: all of it, the agent's own words).
    let failed = |rec: &mut AuditRecord, code: &str, message: String, logged: Option<&str>, stats: ResultStats| {
        if code == "cancelled" {
            tracing::info!("Job cancelled at the control plane's request; its query was stopped.");
            rec.outcome = "cancelled";
            rec.reason = Some(code.to_owned());
            return ResultReport::refused(&job.job_id, JobOutcome::Cancelled, code, message, stats);
        }
        tracing::warn!(reason = code, error = %logged.unwrap_or(&message), "Job failed.");
        rec.outcome = "failed";
        rec.reason = Some(code.to_owned());
        ResultReport::refused(&job.job_id, JobOutcome::Failed, code, message, stats)
    };
    // A database's error text is egress: `egress.errors` decides what of it leaves (with
    // an egress decision when something was removed); the log gets the scrubbed text,
    // whatever the mode.
    let query_failed =
        |rec: &mut AuditRecord, e: &QueryError, stats: ResultStats, decisions: &mut Vec<EgressDecision>| {
            let known = crate::scrub::Known::new(&spec.sql, &spec.params);
            let out = crate::scrub::outgoing(policy.errors, e, &known);
            decisions.extend(out.decision);
            failed(rec, e.code(), out.message, Some(&out.logged), stats)
        };
    let mut decisions = Vec::new();
    let truncation = |decisions: &mut Vec<EgressDecision>| {
        decisions.push(EgressDecision {
            action: EgressAction::Truncated,
            rule: "limits.max_rows".into(),
            detail: format!("the query returned more than {max_rows} rows; the agent read the first {max_rows}"),
        });
    };
    let mut columns = 0;
    // Rows from the database or the cache go into the renderer's sink as they come; a
    // cache hit goes through the same egress checks and masks as a miss.
    let make = || fetch::RenderSink::for_job(&spec, &policy);
    let (sink, fetched) = fetch::cached_query(ctx, &live.cfg, job, &spec, conn, limits, &mut rec, &make).await;
    let rows_read = sink.rows() as u64;
    rec.rows_read = rows_read;
    let cache_hit = rec.cache == Some("hit");
    let stats = ResultStats { rows_read, cache_hit, ..ResultStats::default() };
    let truncated = match fetched {
        Ok(f) => f.truncated,
        Err(QueryError::Sink(message)) => {
            let report = failed(&mut rec, "render_failed", message, None, stats);
            return (with_decisions(report, &mut rec, decisions), rec, upload_until);
        }
        // The policy's own words (column names, rules): nothing from a row.
        Err(QueryError::Refused(d)) => {
            decisions.push(d.clone());
            let report = failed(&mut rec, "egress_refused", d.detail, None, stats);
            return (with_decisions(report, &mut rec, decisions), rec, upload_until);
        }
        Err(e) => {
            let report = query_failed(&mut rec, &e, stats, &mut decisions);
            return (with_decisions(report, &mut rec, decisions), rec, upload_until);
        }
    };
    if truncated {
        truncation(&mut decisions);
    }
    let (rendered, stats) = match sink {
        // A line, area or scatter chart: the rows went into its downsampler and were
        // never held all at once.
        fetch::RenderSink::Chart(mut chart) => match chart.finish(truncated) {
            Ok(r) => {
                let truncated = r.truncated;
                (r, ResultStats { truncated, ..stats })
            }
            Err(message) => {
                let report = failed(&mut rec, "render_failed", message, None, stats);
                return (with_decisions(report, &mut rec, decisions), rec, upload_until);
            }
        },
        fetch::RenderSink::Rows(crate::connectors::Collect(mut rs)) => {
            rs.truncated = truncated;
            columns = rs.columns.len();
            let stats = ResultStats { truncated, ..stats };
            // Masks follow each column's source, whatever the query calls it; a masked
            // column may be a label but not drawn to scale.
            let masked = policy
                .check_rows(&spec.render, rs.rows.len())
                .and_then(|()| policy.column_masks(&rs.columns, rs.provenance.as_ref()))
                .and_then(|masks| policy.check_drawn(&spec.render, &rs.columns, &masks).map(|()| masks))
                .and_then(|masks| policy.apply_masks(&mut rs, &masks, live.mask_key.as_deref()));
            match masked {
                Ok(Some(d)) => decisions.push(d),
                Ok(None) => {}
                Err(d) => {
                    decisions.push(d.clone());
                    let report = failed(&mut rec, "egress_refused", d.detail, None, stats);
                    return (with_decisions(report, &mut rec, decisions), rec, upload_until);
                }
            }
            let (render_rows, render_points) = policy.render_limits(&spec.render, rs.columns.len(), max_rows);
            match crate::render::render_with(&spec.render, &rs, render_rows, render_points) {
                Ok(r) => {
                    let truncated = r.truncated;
                    (r, ResultStats { truncated, ..stats })
                }
                Err(e) => {
                    let report = failed(&mut rec, "render_failed", e.to_string(), None, stats);
                    return (with_decisions(report, &mut rec, decisions), rec, upload_until);
                }
            }
        }
    };
    decisions.extend(rendered.decisions.iter().cloned());
    let rows_available = usize::try_from(stats.rows_read).unwrap_or(usize::MAX);
    match policy.check_output(&spec.render, &rendered, rows_available, columns) {
        Ok(more) => decisions.extend(more),
        Err(d) => {
            decisions.push(d.clone());
            let report = failed(&mut rec, "egress_refused", d.detail, None, stats);
            return (with_decisions(report, &mut rec, decisions), rec, upload_until);
        }
    }
    let (rows_read, cache_hit) = (stats.rows_read, stats.cache_hit);
    let report = ResultReport::succeeded(&job.job_id, rendered.content_type, &rendered.body, stats);
    rec.outcome = "succeeded";
    rec.bytes_sent = report.stats.bytes;
    rec.body_sha256 = Some(sha256_hex(&rendered.body));
    rec.truncated = rendered.truncated;
    tracing::info!(rows_read, cache_hit, bytes = report.stats.bytes, egress = decisions.len(), "Job succeeded.");
    (with_decisions(report, &mut rec, decisions), rec, upload_until)
}

/// States the egress decisions in the report and in the audit record.
fn with_decisions(mut report: ResultReport, rec: &mut AuditRecord, decisions: Vec<EgressDecision>) -> ResultReport {
    let mut decisions = decisions;
    decisions.truncate(outpost_protocol::report::MAX_EGRESS_DECISIONS);
    rec.egress.clone_from(&decisions);
    report.stats.egress = decisions;
    report
}

async fn upload(ctx: &Ctx, report: &ResultReport, until: i64) {
    let body = Bytes::from(serde_json::to_vec(report).unwrap_or_default());
    let path = format!("{PATH_JOBS}{}/result", report.job_id);
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        match ctx.transport.send(Method::POST, &path, Some(body.clone())).await {
            Ok((StatusCode::OK, _)) => return tracing::debug!("Report uploaded."),
            Ok((status, b)) if status.is_client_error() => {
                return tracing::warn!(%status, body = %String::from_utf8_lossy(&b), "Report refused by the control plane.");
            }
            Ok((status, _)) => tracing::warn!(%status, "Report upload failed; retrying."),
            Err(e) => tracing::info!(error = %e, "Report upload failed; retrying."),
        }
        if outpost_protocol::unix_now() > until {
            return tracing::warn!("Giving up on the report upload: the job is long expired.");
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reachability_change_is_told_once_and_a_first_failure_is_a_change() {
        let r = Reachability::default();
        let err = "connection refused";
        assert!(r.lost(&err, Duration::from_millis(100)), "unreachable from the start is worth a warning");
        assert!(!r.lost(&err, Duration::from_millis(200)), "the retries are not");
        assert!(r.ok("cp:7443"), "back");
        assert!(!r.ok("cp:7443"));
        assert!(r.lost(&err, Duration::from_millis(100)), "lost again");
        let fresh = Reachability::default();
        assert!(fresh.ok("cp:7443"), "a first answer is a change");
    }
}
