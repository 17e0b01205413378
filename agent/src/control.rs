//! The running agent's local control socket (`STATE_DIR/agent.sock`): how `outpost-agent
//! status` learns what the daemon is doing and how `outpost-agent reload` (systemd's
//! `ExecReload=`) applies agent.yaml and waits for the verdict.
//!
//! One JSON line asked, one JSON line answered, then the connection closes. The socket is
//! created inside the state dir (0700) with mode 0600, and a peer whose user is neither the
//! agent's nor root is refused; it is local only and never reaches the network. Nothing it
//! answers is a secret: names, times, counts and the reason a reload was refused.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

/// The socket's file name in the state dir.
pub const SOCKET: &str = "agent.sock";

/// The longest request or answer line read.
const MAX_LINE: u64 = 64 * 1024;

/// How long a peer may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections answered at once; more wait for a slot.
const MAX_PEERS: usize = 8;

/// The pause after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Where the running agent's socket is for this state dir.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET)
}

/// What a peer asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// What the daemon is doing.
    Status,
    /// Read agent.yaml again and answer once it is applied or refused. `config` is the
    /// file the asker means: a daemon that runs with another file refuses, so a reload
    /// never lands on a different agent than the one named.
    Reload {
        /// The asker's agent.yaml (absolute).
        config: Option<String>,
    },
}

/// Whether the control plane answered the agent's last request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reach {
    /// No answer yet since the start.
    Connecting,
    /// The last request was answered.
    Connected,
    /// The last request failed; the agent retries with backoff.
    Unreachable,
}

/// The daemon's state, as `outpost-agent status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// The agent's name.
    pub agent: String,
    /// The daemon's version.
    pub version: String,
    /// Its process id.
    pub pid: u32,
    /// Stopping: no new jobs; running ones finish and report.
    #[serde(default)]
    pub stopping: bool,
    /// When it started (unix seconds).
    pub started_at: i64,
    /// The control plane's address it dials.
    pub control_plane: String,
    /// Whether it answers.
    pub reach: Reach,
    /// Since when `reach` holds (unix seconds).
    pub reach_since: i64,
    /// Why the last request failed, while unreachable.
    pub last_error: Option<String>,
    /// Jobs running now.
    pub jobs_running: u64,
    /// Jobs finished since the start.
    pub jobs_done: u64,
    /// When the last job finished (unix seconds), if any since the start.
    pub last_job_at: Option<i64>,
    /// The connections of the config in force.
    pub connections: Vec<String>,
    /// The last reload, if any since the start.
    pub last_reload: Option<ReloadOutcome>,
}

/// A reload's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadOutcome {
    /// When it was decided (unix seconds).
    pub at: i64,
    /// Whether the file now applies to new jobs.
    pub applied: bool,
    /// SHA-256 of the file read, when it could be read.
    pub config_sha256: Option<String>,
    /// The connections in force after it.
    pub connections: Vec<String>,
    /// Why it was refused (the first line; the journal has all of it).
    pub reason: Option<String>,
}

/// What the daemon answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    /// To [`Request::Status`].
    Status(DaemonStatus),
    /// To [`Request::Reload`].
    Reload(ReloadOutcome),
    /// The request could not be served.
    Error {
        /// Why.
        message: String,
    },
}

/// What the daemon does for a peer; the runner implements it.
pub trait Handler: Send + Sync + 'static {
    /// The daemon's state now.
    fn status(&self) -> DaemonStatus;
    /// Applies agent.yaml again (as a SIGHUP does) and returns the verdict.
    fn reload(&self) -> impl std::future::Future<Output = ReloadOutcome> + Send;
    /// The agent.yaml this daemon reads (`None`: none).
    fn config_path(&self) -> Option<PathBuf>;
}

/// The longest text of one field an answer carries (an error from the network may be
/// long); longer text is cut.
const MAX_FIELD: usize = 300;

/// Text from elsewhere (a control plane's refusal, a config error) made safe to print on
/// an operator's terminal: control characters (escape sequences) become spaces and it
/// is cut to [`MAX_FIELD`] characters.
pub fn printable(text: &str) -> String {
    let mut out: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_FIELD).collect();
    if text.chars().count() > MAX_FIELD {
        out.push('…');
    }
    out
}

impl ReloadOutcome {
    fn printable(mut self) -> Self {
        self.reason = self.reason.as_deref().map(printable);
        self
    }
}

impl DaemonStatus {
    fn printable(mut self) -> Self {
        self.last_error = self.last_error.as_deref().map(printable);
        self.last_reload = self.last_reload.map(ReloadOutcome::printable);
        self
    }
}

/// Why the control socket could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No daemon listens for this state dir.
    #[error("the agent is not running (nothing answers at {0}); start it with: systemctl start outpost-agent")]
    NotRunning(String),
    /// The socket exists but this user may not use it.
    #[error("{0}: permission denied; run this as the agent's user (sudo -u outpost) or root")]
    Denied(String),
    /// Reading or writing the socket failed.
    #[error("{path}: {source}")]
    Io {
        /// The socket.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The daemon took longer than allowed.
    #[error("{path}: no answer within {secs} s")]
    Timeout {
        /// The socket.
        path: String,
        /// The time allowed.
        secs: u64,
    },
    /// The answer was not understood (a different version?).
    #[error("{path}: the agent's answer is not understood ({reason})")]
    BadAnswer {
        /// The socket.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The daemon could not serve the request.
    #[error("the agent could not answer: {0}")]
    Refused(String),
}

/// Binds the socket for a daemon that holds the state dir's run lock: a file left by an
/// earlier daemon that died is removed first (the lock says no other daemon is running).
pub fn bind(state_dir: &Path) -> std::io::Result<UnixListener> {
    let path = socket_path(state_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers peers until `shutdown`, then removes the socket.
pub async fn serve<H: Handler>(listener: UnixListener, handler: Arc<H>, shutdown: CancellationToken) {
    let path = listener.local_addr().ok().and_then(|a| a.as_pathname().map(Path::to_path_buf));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_PEERS));
    // The agent's own uid (the socket's owner): peers must be it or root.
    let own_uid = std::fs::metadata(path.as_deref().unwrap_or(Path::new("/")))
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .ok();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = shutdown.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: back off instead of spinning.
                tracing::warn!(error = %e, "Control socket: accept failed.");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let allowed = match (stream.peer_cred(), own_uid) {
            (Ok(cred), Some(own)) => cred.uid() == own || cred.uid() == 0,
            _ => false,
        };
        if !allowed {
            tracing::warn!(peer = ?stream.peer_cred().ok().map(|c| c.uid()), "Control socket: a peer of another user was refused.");
            continue;
        }
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { break };
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            answer(stream, &*handler).await;
            drop(slot);
        });
    }
    if let Some(p) = path {
        let _ = std::fs::remove_file(p);
    }
}

async fn answer<H: Handler>(stream: UnixStream, handler: &H) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let got = tokio::time::timeout(REQUEST_TIMEOUT, BufReader::new(read.take(MAX_LINE)).read_line(&mut line)).await;
    let answer = match got {
        Ok(Ok(_)) => match serde_json::from_str::<Request>(line.trim()) {
            Ok(Request::Status) => Answer::Status(handler.status().printable()),
            Ok(Request::Reload { config }) => match same_config(config.as_deref(), handler.config_path()) {
                Ok(()) => Answer::Reload(handler.reload().await.printable()),
                Err(e) => Answer::Error { message: e.to_string() },
            },
            Err(e) => Answer::Error { message: format!("bad request: {e}") },
        },
        Ok(Err(e)) => Answer::Error { message: format!("bad request: {e}") },
        Err(_) => return,
    };
    let mut bytes = serde_json::to_vec(&answer).unwrap_or_default();
    bytes.push(b'\n');
    let _ = write.write_all(&bytes).await;
    let _ = write.shutdown().await;
}

/// A reload asked for another file than the one the daemon reads; nothing is reloaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the agent here reads {runs}, not {asked}; nothing was reloaded (is --config, or its state_dir, the one you \
     meant?)"
)]
struct OtherConfig {
    /// The file the daemon reads (made printable).
    runs: String,
    /// The file the reload named.
    asked: String,
}

/// Whether the file a reload names is the one the daemon reads.
fn same_config(asked: Option<&str>, runs: Option<PathBuf>) -> Result<(), OtherConfig> {
    let (Some(asked), Some(runs)) = (asked, runs) else { return Ok(()) };
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    if canonical(Path::new(asked)) == canonical(&runs) {
        Ok(())
    } else {
        Err(OtherConfig { runs: printable(&runs.display().to_string()), asked: asked.to_owned() })
    }
}

/// Asks the daemon of this state dir, waiting at most `timeout` for its answer.
pub async fn ask(state_dir: &Path, request: Request, timeout: Duration) -> Result<Answer, ControlError> {
    let path = socket_path(state_dir);
    let shown = path.display().to_string();
    let mut stream = match UnixStream::connect(&path).await {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            return Err(ControlError::NotRunning(shown))
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(ControlError::Denied(shown)),
        Err(source) => return Err(ControlError::Io { path: shown, source }),
    };
    let exchange = async {
        let mut line = serde_json::to_vec(&request).unwrap_or_default();
        line.push(b'\n');
        stream.write_all(&line).await?;
        let mut reply = String::new();
        BufReader::new((&mut stream).take(MAX_LINE)).read_line(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    let reply = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(r)) => r,
        Ok(Err(source)) => return Err(ControlError::Io { path: shown, source }),
        Err(_) => return Err(ControlError::Timeout { path: shown, secs: timeout.as_secs() }),
    };
    if reply.is_empty() {
        // The daemon closes without answering a peer it refuses.
        return Err(ControlError::Denied(shown));
    }
    match serde_json::from_str::<Answer>(reply.trim()) {
        Ok(Answer::Error { message }) => Err(ControlError::Refused(message)),
        Ok(a) => Ok(a),
        Err(e) => Err(ControlError::BadAnswer { path: shown, reason: e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        reloads: std::sync::atomic::AtomicU32,
    }

    impl Handler for Fake {
        fn status(&self) -> DaemonStatus {
            DaemonStatus {
                agent: "a1".into(),
                version: "0".into(),
                pid: 7,
                stopping: false,
                started_at: 1,
                control_plane: "cp:7443".into(),
                reach: Reach::Connected,
                reach_since: 2,
                last_error: None,
                jobs_running: 0,
                jobs_done: 3,
                last_job_at: Some(4),
                connections: vec!["sample".into()],
                last_reload: None,
            }
        }

        fn config_path(&self) -> Option<PathBuf> {
            Some(PathBuf::from("/etc/outpost/agent.yaml"))
        }

        async fn reload(&self) -> ReloadOutcome {
            let n = self.reloads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            ReloadOutcome {
                at: 5,
                applied: n == 0,
                config_sha256: None,
                connections: vec![],
                reason: (n != 0).then(|| "line 3: bad".into()),
            }
        }
    }

    #[tokio::test]
    async fn a_peer_gets_the_status_and_each_reload_verdict_and_the_socket_goes_at_shutdown() {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = bind(dir.path()).expect("test step");
        let mode = std::fs::metadata(socket_path(dir.path())).expect("test step").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, Arc::new(Fake { reloads: Default::default() }), stop.clone()));
        let wait = Duration::from_secs(5);
        match ask(dir.path(), Request::Status, wait).await.expect("test step") {
            Answer::Status(s) => assert_eq!((s.agent.as_str(), s.jobs_done), ("a1", 3)),
            other => panic!("{other:?}"),
        }
        match ask(dir.path(), Request::Reload { config: None }, wait).await.expect("test step") {
            Answer::Reload(r) => assert!(r.applied),
            other => panic!("{other:?}"),
        }
        match ask(dir.path(), Request::Reload { config: None }, wait).await.expect("test step") {
            Answer::Reload(r) => assert_eq!((r.applied, r.reason.as_deref()), (false, Some("line 3: bad"))),
            other => panic!("{other:?}"),
        }
        // A reload of another file than the daemon's is refused, and nothing reloads.
        match ask(dir.path(), Request::Reload { config: Some("/srv/other/agent.yaml".into()) }, wait).await {
            Err(ControlError::Refused(m)) => {
                assert_eq!(
                    m,
                    "the agent here reads /etc/outpost/agent.yaml, not /srv/other/agent.yaml; nothing was reloaded \
                     (is --config, or its state_dir, the one you meant?)"
                )
            }
            other => panic!("{other:?}"),
        }
        stop.cancel();
        server.await.expect("test step");
        assert!(!socket_path(dir.path()).exists());
        assert!(matches!(ask(dir.path(), Request::Status, wait).await, Err(ControlError::NotRunning(_))));
    }

    #[tokio::test]
    async fn a_stale_socket_of_a_dead_daemon_is_not_running_and_is_replaced_at_bind() {
        let dir = tempfile::tempdir().expect("temp dir");
        drop(std::os::unix::net::UnixListener::bind(socket_path(dir.path())).expect("test step"));
        assert!(matches!(
            ask(dir.path(), Request::Status, Duration::from_secs(5)).await,
            Err(ControlError::NotRunning(_))
        ));
        bind(dir.path()).expect("test step");
    }

    #[tokio::test]
    async fn a_garbled_request_is_answered_with_an_error_not_a_hang() {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = bind(dir.path()).expect("test step");
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, Arc::new(Fake { reloads: Default::default() }), stop.clone()));
        let mut s = UnixStream::connect(socket_path(dir.path())).await.expect("test step");
        s.write_all(b"{\"op\":\"drop_tables\"}\n").await.expect("test step");
        let mut reply = String::new();
        BufReader::new(s).read_line(&mut reply).await.expect("test step");
        let a: Answer = serde_json::from_str(&reply).expect("test step");
        assert!(matches!(a, Answer::Error { ref message } if message.starts_with("bad request")), "{a:?}");
        stop.cancel();
    }

    #[test]
    fn text_from_elsewhere_is_printable_and_short() {
        let hostile = "\u{1b}]0;owned\u{7}\u{1b}[2K\rreaches cloud:  yes";
        assert_eq!(printable(hostile), " ]0;owned  [2K reaches cloud:  yes");
        let long = "x".repeat(100_000);
        assert_eq!(printable(&long).chars().count(), MAX_FIELD + 1);
    }
}
