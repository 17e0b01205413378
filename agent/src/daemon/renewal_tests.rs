//! Certificate renewal against the agent's clock, under tokio's paused time (no real
//! waits): when it is asked for, how a failure is retried, and what is logged once the
//! certificate is gone.
//!
//! The fixture's control plane (127.0.0.1:1) refuses every connection, so each attempt
//! fails and shows as one log line ("renewal failed", or "expired" past `not_after`):
//! these tests count attempts. That a renewal which succeeds installs a new key and
//! certificate is the e2e test's part (tests/tests/e2e/security.rs).

use super::testing::{ctx_with_certificate, Logs, START};
use super::*;

const FAILED: &str = "Certificate renewal failed; retrying.";
const EXPIRED: &str = "Certificate expired before it could be renewed";

fn attempts(logs: &Logs) -> usize {
    logs.count(FAILED) + logs.count(EXPIRED)
}

/// `secs` seconds pass on a running host: the agent's wall clock and tokio's (paused)
/// clock move together, a second at a time.
async fn pass(ctx: &Ctx, secs: i64) {
    for _ in 0..secs {
        ctx.clock.advance(1);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Waits (tokio time only, the wall clock stands) until an attempt is logged, or fails
/// after `within`.
async fn attempted(logs: &Logs, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while attempts(logs) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no renewal attempt within {within:?}:\n{}", logs.text());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A renewal loop running over a certificate from `issued_at` to `not_after`, its logs
/// captured.
struct Running {
    logs: Logs,
    ctx: Arc<Ctx>,
    shutdown: CancellationToken,
    renewal: tokio::task::JoinHandle<()>,
    _guard: tracing::subscriber::DefaultGuard,
    _dir: tempfile::TempDir,
}

impl Running {
    fn start(issued_at: i64, not_after: i64) -> Self {
        let (logs, _guard) = Logs::capture();
        let _dir = tempfile::tempdir().expect("tempdir");
        let ctx = ctx_with_certificate(_dir.path(), issued_at, not_after);
        let shutdown = CancellationToken::new();
        let renewal = tokio::spawn(renewal_loop(Arc::clone(&ctx), shutdown.clone()));
        Self { logs, ctx, shutdown, renewal, _guard, _dir }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(1), self.renewal).await.expect("renewal stops").expect("renewal task");
    }
}

#[tokio::test(start_paused = true)]
async fn renewal_is_asked_at_two_thirds_of_the_certificate_lifetime_and_not_before() {
    // A lifetime of 3000 s: renewal is due at START + 2000.
    let run = Running::start(START, START + 3_000);
    let (logs, ctx) = (&run.logs, &run.ctx);
    pass(ctx, 1_999).await;
    assert_eq!(attempts(logs), 0, "asked before two thirds of the lifetime:\n{}", logs.text());
    pass(ctx, 1).await;
    attempted(logs, Duration::from_secs(1)).await;
    assert_eq!(logs.count(EXPIRED), 0, "the certificate is still valid:\n{}", logs.text());
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_renewal_falls_due_by_the_wall_clock_even_when_the_monotonic_clock_missed_the_time() {
    let run = Running::start(START, START + 3_000);
    let (logs, ctx) = (&run.logs, &run.ctx);
    pass(ctx, 10).await;
    // The host was suspended for 40 minutes: the wall clock moved, tokio's did not.
    ctx.clock.advance(2_400);
    assert_eq!(attempts(logs), 0);
    // The loop reads the wall clock again within one step and asks at once.
    attempted(logs, RECHECK_EVERY + Duration::from_secs(1)).await;
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_renewal_is_retried_with_backoff_and_said_to_be_expired_only_past_not_after() {
    // Overdue (two thirds were at START - 333), and the certificate ends at START + 1000.
    let run = Running::start(START - 3_000, START + 1_000);
    let (logs, ctx) = (&run.logs, &run.ctx);
    // Retried soon at first: delays from 0.5 s, doubling.
    pass(ctx, 30).await;
    let early = attempts(logs);
    assert!(early >= 4, "{early} attempts in the first 30 s:\n{}", logs.text());
    // Later, at most one attempt per half-minute (the delay is capped at 60 s, jittered
    // over its upper half), and still trying.
    pass(ctx, 270).await;
    let before = attempts(logs);
    pass(ctx, 600).await;
    let later = attempts(logs) - before;
    assert!((5..=21).contains(&later), "{later} attempts in 600 s once backed off:\n{}", logs.text());
    assert_eq!(logs.count(EXPIRED), 0, "still valid at START + 900:\n{}", logs.text());
    // Past not_after each failure says the certificate expired and how to recover.
    pass(ctx, 100).await;
    let failed = logs.count(FAILED);
    pass(ctx, 300).await;
    assert!(logs.count(EXPIRED) >= 3, "past not_after:\n{}", logs.text());
    assert_eq!(logs.count(FAILED), failed, "no more plain retries once expired:\n{}", logs.text());
    assert!(logs.text().contains("outpost-agent enroll --token"), "the fix is named:\n{}", logs.text());
    run.stop().await;
}
