//! The daemon's shared state: the config in force, the identity, the transport, the
//! audit log, the running jobs and what `status` reports, and whether the control plane
//! answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::audit::AuditLog;
use crate::cache::Cache;
use crate::config::AgentConfig;
use crate::connectors::Connector;
use crate::identity;
use crate::keys::KeyTrust;
use crate::transport::Transport;

/// Whether the control plane answered the last request; logs each change once, at
/// WARN (a first answer at start is INFO; the retries while it stays away are DEBUG).
#[derive(Debug, Default)]
pub(super) struct Reachability(std::sync::atomic::AtomicU8);

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
pub(super) struct Live {
    pub(super) cfg: AgentConfig,
    pub(super) connections: HashMap<String, Connector>,
    /// Key of the egress policy's keyed hashes, when a mask rule asks for them.
    pub(super) mask_key: Option<zeroize::Zeroizing<[u8; 32]>>,
}

pub(super) struct Ctx {
    /// Unix seconds for every time decision (renewal, expiry, replay windows, cache ages):
    /// the system clock in `run`, a manual one in tests.
    pub(super) clock: outpost_common::clock::Clock,
    pub(super) reachable: Reachability,
    /// The config in force and its connectors (replaced by a reload).
    pub(super) live: std::sync::RwLock<Arc<Live>>,
    /// agent.yaml, read again on SIGHUP.
    pub(super) config_path: Option<std::path::PathBuf>,
    pub(super) metrics: Arc<crate::metrics::Metrics>,
    /// Progress of the poll loop, for the systemd watchdog.
    pub(super) liveness: crate::service::Liveness,
    /// Jobs finished since start, for the status line.
    pub(super) jobs_done: std::sync::atomic::AtomicU64,
    /// The enrolment record, updated by renewals.
    pub(super) enrolment: std::sync::Mutex<identity::Enrolment>,
    /// The control plane's CA (pinned at enrolment).
    pub(super) ca: rustls_pki_types::CertificateDer<'static>,
    pub(super) agent: String,
    pub(super) keys: std::sync::RwLock<KeyTrust>,
    /// The last key-set version refused, so that a refusal is logged and audited once.
    pub(super) refused_key_set: std::sync::atomic::AtomicU64,
    pub(super) transport: Transport,
    pub(super) audit: AuditLog,
    pub(super) seen: crate::replay::SeenJobs,
    /// The encrypted result cache; `None` when policy turns it off for every connection.
    pub(super) cache: Option<Cache>,
    /// The jobs running now, each with the token that stops its query.
    pub(super) running: std::sync::Mutex<HashMap<String, CancellationToken>>,
    /// When the daemon started (unix seconds).
    pub(super) started_at: i64,
    /// Since when the control plane's reachability holds (unix seconds).
    pub(super) reach_since: std::sync::atomic::AtomicI64,
    /// Why the last request to the control plane failed, while it is unreachable.
    pub(super) last_error: std::sync::Mutex<Option<String>>,
    /// When the last job finished (unix seconds; 0: none since the start).
    pub(super) last_job_at: std::sync::atomic::AtomicI64,
    /// One reload at a time (SIGHUP or the control socket).
    pub(super) reload_lock: tokio::sync::Mutex<()>,
    /// The last reload's verdict.
    pub(super) last_reload: std::sync::Mutex<Option<crate::control::ReloadOutcome>>,
}

impl Ctx {
    /// The config in force now.
    pub(super) fn live(&self) -> Arc<Live> {
        Arc::clone(&self.live.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The status line systemd shows (`systemctl status outpost-agent`).
    pub(super) fn status_line(&self) -> String {
        let running = self.running().len();
        let done = self.jobs_done.load(std::sync::atomic::Ordering::Relaxed);
        let peer = self.transport.addr();
        if self.reachable.0.load(std::sync::atomic::Ordering::SeqCst) == UP {
            format!("Connected to the control plane at {peer}; {running} job(s) running, {done} done since start")
        } else {
            format!("Control plane at {peer} unreachable, retrying with backoff; {running} job(s) running, {done} done since start")
        }
    }

    pub(super) fn reachable(&self) {
        if self.reachable.ok(self.transport.addr()) {
            self.reach_since.store(self.clock.now(), std::sync::atomic::Ordering::Relaxed);
            *self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            self.metrics.reachable(true);
            crate::service::status(&self.status_line());
        }
    }

    pub(super) fn unreachable(&self, error: &dyn std::fmt::Display, retry_in: Duration) {
        *self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error.to_string());
        if self.reachable.lost(error, retry_in) {
            self.reach_since.store(self.clock.now(), std::sync::atomic::Ordering::Relaxed);
            self.metrics.reachable(false);
            crate::service::status(&self.status_line());
        }
    }

    /// The connections of the config in force, sorted.
    pub(super) fn connection_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.live().connections.keys().cloned().collect();
        names.sort();
        names
    }

    /// What `outpost-agent status` shows of the running daemon.
    pub(super) fn daemon_status(&self) -> crate::control::DaemonStatus {
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

    pub(super) fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops the queries of the jobs named, where this agent runs them.
    pub(super) fn cancel_jobs(&self, ids: &[String]) {
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
pub(super) struct RunningGuard<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) id: String,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.ctx.running().remove(&self.id);
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
