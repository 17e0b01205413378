//! What both binaries do around their library call: logging to stderr (plain text when
//! stderr is not a terminal, level from `OUTPOST_LOG`, default `info`) and waiting for
//! SIGTERM or SIGINT.

use std::io::IsTerminal as _;

/// Sets up logging to stderr.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OUTPOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// The multi-threaded tokio runtime both binaries run on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

/// Resolves on the first SIGTERM or SIGINT (never, if the handlers cannot be installed).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Crash-test hook, compiled into debug builds only: when `OUTPOST_PAUSE_AT` names
/// `point`, prints `paused at POINT` on stderr and stops there for good, so that an
/// end-to-end test can `kill -9` the process at exactly that step of a multi-step write.
/// Release builds have no such variable and this is a no-op.
#[inline]
pub fn pause_point(point: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("OUTPOST_PAUSE_AT").is_some_and(|v| v == point) {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "paused at {point}");
        loop {
            std::thread::park();
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}
