//! What both binaries do around their library call: logging (to journald with structured
//! fields when systemd runs the process with its stderr on the journal, to stderr
//! otherwise; level from `OUTPOST_LOG`, default `info`) and waiting for signals.

use std::io::IsTerminal as _;

/// Where logs go: chosen by `OUTPOST_LOG_TARGET` (`journald` or `stderr`), else journald
/// when `$JOURNAL_STREAM` names this process's stderr (how systemd says stderr is the
/// journal), else stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// journald's native protocol: each event's fields become journal fields
    /// (`OUTPOST_JOB_ID=…`), with `PRIORITY` from the level.
    Journald,
    /// Plain text on stderr (ANSI colours on a terminal only).
    Stderr,
}

impl LogTarget {
    /// The target for this process.
    pub fn detect() -> Self {
        match std::env::var("OUTPOST_LOG_TARGET").as_deref() {
            Ok("journald") => return Self::Journald,
            Ok("stderr") => return Self::Stderr,
            _ => {}
        }
        if stderr_is_journal() {
            Self::Journald
        } else {
            Self::Stderr
        }
    }
}

/// Whether `$JOURNAL_STREAM` (`DEVICE:INODE`) is this process's stderr, as
/// systemd.exec(5) says to check: a child that inherited the variable but not the
/// stream must keep writing to stderr.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::MetadataExt as _;
    let Ok(v) = std::env::var("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = v.split_once(':') else { return false };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else { return false };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else { return false };
    let Ok(meta) = std::fs::File::from(fd).metadata() else { return false };
    meta.dev() == dev && meta.ino() == ino
}

/// Sets up logging: journald or stderr, see [`LogTarget`], at `default_level` unless
/// `OUTPOST_LOG` says otherwise (the daemons log at `info`; a one-shot command at `warn`,
/// so that its own output is not mixed with routine lines). When journald was chosen but
/// its socket cannot be reached, logs go to stderr and say so.
pub fn init_logging(default_level: &str) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("OUTPOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let mut journal_error = None;
    if LogTarget::detect() == LogTarget::Journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                use tracing_journald::{Priority, PriorityMappings};
                // syslog's meaning of the levels (`journalctl -p info` shows routine lines).
                let levels = PriorityMappings {
                    info: Priority::Informational,
                    debug: Priority::Debug,
                    ..PriorityMappings::new()
                };
                let layer = layer.with_field_prefix(Some("OUTPOST".into())).with_priority_mappings(levels);
                tracing_subscriber::registry().with(filter).with(layer).init();
                return;
            }
            Err(e) => journal_error = Some(e),
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    if let Some(e) = journal_error {
        tracing::warn!(error = %e, "journald's socket is not reachable; logging to stderr.");
    }
}

/// The multi-threaded tokio runtime both binaries run on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

/// A stream of SIGHUPs (the reload request of `systemctl reload`); `None` when the
/// handler cannot be installed.
pub fn hangups() -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
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

/// Exit code for bad usage or config (sysexits `EX_USAGE`), the same in both binaries.
pub const EX_USAGE: u8 = 64;

/// Exit code when output could not be written (sysexits `EX_IOERR`).
pub const EX_IOERR: u8 = 74;

/// Parses the command line; `--help` and `--version` print and exit 0, a usage error
/// prints clap's message and exits [`EX_USAGE`] (not clap's 2), like a config error.
pub fn parse_args<P: clap::Parser>() -> Result<P, std::process::ExitCode> {
    P::try_parse().map_err(|e| {
        if e.print().is_err() {
            // The help or error could not be written (a full disk): not a success.
            return std::process::ExitCode::from(EX_IOERR);
        }
        if e.use_stderr() {
            std::process::ExitCode::from(EX_USAGE)
        } else {
            std::process::ExitCode::SUCCESS
        }
    })
}

/// `outpost-agent status | head -3` closes the pipe early; Rust's `println!` then panics
/// ("failed printing to stdout: Broken pipe", exit 101). A command line tool ends quietly
/// instead, with the shell's code for a pipe closed (141 = 128 + SIGPIPE); every other
/// panic keeps the default report.
pub fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
