//! The one time source of the agent and the control plane ([`Clock`]): the system clock
//! in production, a manual clock that tests set and advance, so expiry, renewal and
//! retention are tested without real waits.
//!
//! Only wall-clock unix seconds go through it; tokio timers (sleeps, long-poll waits)
//! stay on tokio time, which tests pause and advance (`tokio::time::pause`).
//!
//! It refuses to be moved from outside: a manual clock is built only in code (tests), and
//! no flag or environment variable of a binary can make one, since a clock an operator
//! could set would stretch certificate, job and cache lifetimes.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Unix seconds, from the system or from a test. Cheap to clone: clones share one time.
#[derive(Debug, Clone)]
pub struct Clock(Source);

#[derive(Debug, Clone)]
enum Source {
    System,
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// The system clock ([`outpost_protocol::unix_now`]).
    pub fn system() -> Self {
        Self(Source::System)
    }

    /// A clock that stands at `start` (unix seconds) until [`set`](Self::set) or
    /// [`advance`](Self::advance) moves it.
    pub fn manual(start: i64) -> Self {
        Self(Source::Manual(Arc::new(AtomicI64::new(start))))
    }

    /// Now, unix seconds.
    pub fn now(&self) -> i64 {
        match &self.0 {
            Source::System => outpost_protocol::unix_now(),
            Source::Manual(t) => t.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock (and its clones) on by `secs`; the system clock ignores it.
    pub fn advance(&self, secs: i64) {
        if let Source::Manual(t) = &self.0 {
            t.fetch_add(secs, Ordering::SeqCst);
        }
    }

    /// Sets a manual clock (and its clones) to `t`; the system clock ignores it.
    pub fn set(&self, t: i64) {
        if let Source::Manual(at) = &self.0 {
            at.store(t, Ordering::SeqCst);
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

#[cfg(test)]
mod tests {
    use super::Clock;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_its_clones_follow() {
        let clock = Clock::manual(1_000);
        let other = clock.clone();
        assert_eq!(clock.now(), 1_000);
        clock.advance(30);
        assert_eq!(other.now(), 1_030);
        other.set(5);
        assert_eq!(clock.now(), 5);
    }

    #[test]
    fn the_system_clock_reads_the_system_time_and_ignores_set() {
        let clock = Clock::system();
        clock.set(5);
        clock.advance(-1_000_000);
        assert!((clock.now() - outpost_protocol::unix_now()).abs() <= 1);
    }
}
