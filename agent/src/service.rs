//! Talking to systemd (`Type=notify`): readiness, status lines, reloads and the watchdog.
//!
//! Every call is a no-op when `$NOTIFY_SOCKET` is unset, so the agent behaves the same
//! outside systemd. The watchdog is fed only while the poll loop makes progress: a hung
//! main loop stops the pings, and systemd restarts the service (`Restart=on-failure`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "Cannot notify systemd.");
    }
}

/// Tells systemd the agent is ready, with a first status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Updates the status line `systemctl status` shows.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// Tells systemd a reload has started (answered by [`reloaded`]).
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading, NotifyState::Status("Reloading agent.yaml")];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

/// Tells systemd the reload is over (applied or refused), with the status line.
pub fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd the agent is stopping.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("Stopping: running jobs finish and report")]);
}

/// Progress of the main loop, for the watchdog.
#[derive(Debug)]
pub struct Liveness {
    start: Instant,
    /// Milliseconds since `start` of the last progress.
    last: AtomicU64,
}

impl Default for Liveness {
    fn default() -> Self {
        Self { start: Instant::now(), last: AtomicU64::new(0) }
    }
}

impl Liveness {
    /// Records that the main loop went round.
    pub fn beat(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Time since the last [`beat`](Self::beat).
    pub fn since_last(&self) -> Duration {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

/// The watchdog's ping interval: half of `$WATCHDOG_USEC` when systemd set one for this
/// process.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2).filter(|d| !d.is_zero())
}

/// Pings the watchdog every `every` while `live` shows progress within `stall`; stops
/// pinging (and says why, once) when the main loop hangs, so that systemd restarts us.
pub async fn watchdog(
    live: &Liveness,
    every: Duration,
    stall: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut stalled = false;
    loop {
        let since = live.since_last();
        if since <= stall {
            send(&[NotifyState::Watchdog]);
            stalled = false;
        } else if !stalled {
            stalled = true;
            tracing::error!(
                stalled_secs = since.as_secs(),
                "The main loop has made no progress; no longer feeding the systemd watchdog."
            );
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
