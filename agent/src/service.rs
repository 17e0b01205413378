//! Talking to systemd (`Type=notify`): readiness, status lines, reloads and the watchdog.
//!
//! Every call is a no-op when `$NOTIFY_SOCKET` is unset, so the agent behaves the same
//! outside systemd. The watchdog is fed only while the poll loop makes progress: a hung
//! main loop stops the pings, and systemd restarts the service (`Restart=on-failure`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use outpost_common::sdnotify::{ready, reloaded, status, watchdog_interval};

/// Tells systemd a reload of agent.yaml has started.
pub fn reloading() {
    outpost_common::sdnotify::reloading("Reloading agent.yaml");
}

/// Tells systemd the agent is stopping.
pub fn stopping() {
    outpost_common::sdnotify::stopping("Stopping: running jobs finish and report");
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
            outpost_common::sdnotify::watchdog_ping();
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
