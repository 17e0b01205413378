//! Jittered exponential backoff, the one retry helper of the agent and the control plane.
//!
//! Delays double from `base` up to `max`; each actual delay is drawn uniformly from
//! the upper half of the current step ("equal jitter"), so many agents that lost the
//! control plane at the same moment do not come back in lock-step.

use std::time::Duration;

/// Backoff state.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff from `base` to `max`; `base` must be non-zero and not above `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        let base = base.max(Duration::from_millis(1));
        Self { base, max: max.max(base), attempt: 0 }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.base.saturating_mul(1u32 << self.attempt.min(20)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        let r = u64::from_le_bytes(outpost_protocol::ids::random_bytes::<8>());
        let jitter_ns = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_nanos(r % jitter_ns)
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_stay_within_half_to_full_step_and_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let expected_steps = [100u64, 200, 400, 800, 1600, 2000, 2000];
        for step in expected_steps {
            let d = b.next_delay();
            assert!(d >= Duration::from_millis(step / 2) && d <= Duration::from_millis(step), "{d:?} for step {step}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
