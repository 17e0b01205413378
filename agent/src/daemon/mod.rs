//! `outpost-agent run`: the daemon. Its start-up ([`run`]: identity, transport, vault,
//! connections, audit log, control socket) and its loops, each in its own span and each
//! returning once the shutdown token is cancelled: the long-poll (`transport`), with the
//! key-set sync its answers trigger (`key_sets`), the heartbeat, certificate renewal
//! (`renewal`), the cache sweep (`cache`), SIGHUP reloads (`reload`) and the systemd
//! watchdog. The job pipeline is `job`; the shared state is `ctx`.
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
//! running jobs finish and report within a grace period, drains the other loops (not
//! aborting them: a renewal saving its identity finishes), then returns.

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
use crate::config::AgentConfig;
use crate::connectors::{QueryError, QueryLimits};
use crate::identity::{self, Identity};
use crate::keys::KeyTrust;
use crate::transport::{self, Transport};

mod ctx;
mod job;
mod key_sets;
mod loops;
mod prepare;
mod reload;
mod renewal;

use ctx::{Ctx, Live, Reachability, RunningGuard};
use job::*;
use key_sets::*;
use loops::*;
use prepare::{needs_vault, open_vault};
pub use prepare::{open_cache, prepare_connections, SYSTEM_CA_BUNDLE};
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

/// Formats unix seconds as RFC 3339.
pub fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).map(|t| t.to_rfc3339()).unwrap_or_else(|| unix.to_string())
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
    // The system clock: nothing outside this code can move it (see `outpost_common::clock`).
    let clock = outpost_common::clock::Clock::system();
    let identity = identity::load(&cfg.state_dir)?;
    let agent = identity.enrolment.agent.clone();
    if identity.enrolment.not_after < clock.now() {
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
    let cache = open_cache(&cfg, vault.as_ref(), clock.now())?;
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
    let now = clock.now();
    let ctx = Arc::new(Ctx {
        clock,
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
        started_at: now,
        reach_since: std::sync::atomic::AtomicI64::new(now),
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
mod loops_tests;
#[cfg(test)]
mod renewal_tests;
#[cfg(test)]
mod testing;
