//! The spawned loops stop at shutdown: each returns promptly once the token is cancelled,
//! at its waits and during its retries, under tokio's paused time (no real waits).

use super::testing::{ctx, ctx_with_certificate, key, START};
use super::*;

/// Long enough for every loop to reach its wait (paused time: it passes at once).
const SETTLE: Duration = Duration::from_secs(120);
/// What "promptly" means: far shorter than any loop's own wait.
const PROMPT: Duration = Duration::from_secs(1);

async fn stops_promptly(name: &str, handle: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(PROMPT, handle)
        .await
        .unwrap_or_else(|_| panic!("{name} did not return once shutdown was cancelled"))
        .unwrap_or_else(|e| panic!("{name} failed: {e}"));
}

#[tokio::test(start_paused = true)]
async fn the_heartbeat_and_renewal_loops_return_at_their_waits_once_shutdown_is_cancelled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = START;
    // Renewal not due for hours: the loop waits.
    let ctx = ctx_with_certificate(dir.path(), now, now + 86_400);
    let shutdown = CancellationToken::new();
    let heartbeat = tokio::spawn(heartbeat_loop(Arc::clone(&ctx), shutdown.clone()));
    let renewal = tokio::spawn(renewal_loop(Arc::clone(&ctx), shutdown.clone()));
    tokio::time::sleep(SETTLE).await;
    assert!(!heartbeat.is_finished() && !renewal.is_finished(), "they run until shutdown");
    shutdown.cancel();
    stops_promptly("heartbeat", heartbeat).await;
    stops_promptly("renewal", renewal).await;
}

#[tokio::test(start_paused = true)]
async fn a_renewal_retrying_with_backoff_returns_once_shutdown_is_cancelled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = START;
    // Due now, and the control plane (127.0.0.1:1) never answers: it retries with backoff.
    let ctx = ctx_with_certificate(dir.path(), now - 3_000, now + 1_000);
    let shutdown = CancellationToken::new();
    let renewal = tokio::spawn(renewal_loop(Arc::clone(&ctx), shutdown.clone()));
    tokio::time::sleep(SETTLE).await;
    assert!(!renewal.is_finished(), "it keeps retrying");
    shutdown.cancel();
    stops_promptly("renewal", renewal).await;
    let e = ctx.enrolment.lock().expect("enrolment");
    assert_eq!((e.cert_issued_at, e.not_after), (now - 3_000, now + 1_000), "nothing was renewed");
    assert!(!dir.path().join("state").join(identity::CERT_FILE).exists(), "nothing was written");
}

#[tokio::test(start_paused = true)]
async fn a_renewal_due_after_shutdown_is_not_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = START;
    let ctx = ctx_with_certificate(dir.path(), now - 3_000, now + 1_000);
    let shutdown = CancellationToken::new();
    shutdown.cancel();
    stops_promptly("renewal", tokio::spawn(renewal_loop(ctx, shutdown))).await;
}

#[tokio::test(start_paused = true)]
async fn the_reload_loop_returns_once_shutdown_is_cancelled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = Arc::new(ctx(dir.path(), &key(), ""));
    let hups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).expect("SIGHUP handler");
    let shutdown = CancellationToken::new();
    let reload = tokio::spawn(reload::reload_loop(ctx, hups, shutdown.clone()));
    tokio::time::sleep(SETTLE).await;
    assert!(!reload.is_finished(), "it waits for SIGHUPs until shutdown");
    shutdown.cancel();
    stops_promptly("reload", reload).await;
}

#[tokio::test(start_paused = true)]
async fn the_drain_waits_for_loops_that_stop_and_aborts_one_that_does_not() {
    let shutdown = CancellationToken::new();
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let polite = {
        let (shutdown, stopped) = (shutdown.clone(), Arc::clone(&stopped));
        tokio::spawn(async move {
            shutdown.cancelled().await;
            // Work that finishes after the signal (a renewal saving its identity, say).
            tokio::time::sleep(Duration::from_secs(1)).await;
            stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let stuck = tokio::spawn(std::future::pending::<()>());
    let stuck_abort = stuck.abort_handle();
    shutdown.cancel();
    let started = tokio::time::Instant::now();
    drain(vec![("polite", polite), ("stuck", stuck)], Duration::from_secs(5)).await;
    assert!(stopped.load(std::sync::atomic::Ordering::SeqCst), "the loop that stops is waited for, not cut");
    assert_eq!(started.elapsed(), Duration::from_secs(5), "the drain is bounded");
    tokio::task::yield_now().await;
    assert!(stuck_abort.is_finished(), "the loop that did not stop is aborted");
}
