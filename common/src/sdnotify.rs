//! Talking to systemd (`Type=notify`): readiness, status lines, reloads, stopping and
//! watchdog pings, shared by the agent and the control plane.
//!
//! Every call is a no-op when `$NOTIFY_SOCKET` is unset, so a binary behaves the same
//! outside systemd. What feeds the watchdog is each binary's own decision (the agent's
//! poll loop, the control plane's store).

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "Cannot notify systemd.");
    }
}

/// Tells systemd the service is ready, with a first status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Updates the status line `systemctl status` shows.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// Tells systemd a reload has started (answered by [`reloaded`]).
pub fn reloading(status: &str) {
    let mut states = vec![NotifyState::Reloading, NotifyState::Status(status)];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

/// Tells systemd the reload is over (applied or refused), with the status line.
pub fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd the service is stopping, and why it takes a moment.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// One watchdog ping.
pub fn watchdog_ping() {
    send(&[NotifyState::Watchdog]);
}

/// The watchdog's ping interval: half of `$WATCHDOG_USEC` when systemd set one for this
/// process.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2).filter(|d| !d.is_zero())
}
