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
mod job;
mod key_sets;
mod loops;
mod reload;
mod renewal;

use job::*;
use key_sets::*;
use loops::*;
pub use renewal::renew_at;
use renewal::*;

/// Time running jobs get to finish and report after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Longest a clean stop waits for its last heartbeat.
const STOP_HEARTBEAT_WAIT: Duration = Duration::from_secs(3);
/// Longest a reload waits for its heartbeat before it reports itself done.
const RELOAD_HEARTBEAT_WAIT: Duration = Duration::from_secs(5);
/// Longest the spawned loops get, together, to return once the poll loop has (they were
/// told at the shutdown signal); inside systemd's `TimeoutStopSec=45s` with
/// `SHUTDOWN_GRACE` and `STOP_HEARTBEAT_WAIT`.
const LOOP_DRAIN_WAIT: Duration = Duration::from_secs(5);
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
    // Each loop in its own span (the sweep's is `cache`, as its log lines have always
    // said); all return once `shutdown` is cancelled and are drained, not aborted, at the end.
    let mut loops = vec![
        (
            "renewal",
            tokio::spawn(renewal_loop(Arc::clone(&ctx), shutdown.clone()).instrument(tracing::info_span!("renewal"))),
        ),
        (
            "heartbeat",
            tokio::spawn(
                heartbeat_loop(Arc::clone(&ctx), shutdown.clone()).instrument(tracing::info_span!("heartbeat")),
            ),
        ),
        (
            "sweep",
            tokio::spawn(sweep_loop(Arc::clone(&ctx), shutdown.clone()).instrument(tracing::info_span!("cache"))),
        ),
    ];
    if let Some(hups) = reload {
        loops.push((
            "reload",
            tokio::spawn(
                reload::reload_loop(Arc::clone(&ctx), hups, shutdown.clone()).instrument(tracing::info_span!("reload")),
            ),
        ));
    }
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
        loops.push(("metrics", tokio::spawn(crate::metrics::serve(listener, metrics, shutdown.clone()))));
    }
    let stall = Duration::from_secs(ctx.live().cfg.limits.long_poll_secs.get()) + WATCHDOG_STALL_MARGIN;
    if let Some(every) = crate::service::watchdog_interval() {
        let ctx = Arc::clone(&ctx);
        let shutdown = shutdown.clone();
        let watchdog =
            tokio::spawn(async move { crate::service::watchdog(&ctx.liveness, every, stall, shutdown).await });
        loops.push(("watchdog", watchdog));
    }
    crate::service::ready(&ctx.status_line());
    poll_loop(Arc::clone(&ctx), shutdown).instrument(tracing::info_span!("transport")).await;
    crate::service::stopping();
    drain(loops, LOOP_DRAIN_WAIT).await;
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

#[cfg(test)]
mod job_tests;
#[cfg(test)]
mod loops_tests;

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
