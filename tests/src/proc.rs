//! Child processes with their stderr copied to a log file and watched for lines.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// Variables of the test's own environment never passed to a child: a proxy or a systemd
/// credentials directory on the CI machine must not change what a test sees. A test that
/// wants one sets it explicitly.
pub const CLEARED_ENV: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "CREDENTIALS_DIRECTORY",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
    "OUTPOST_LOG_TARGET",
    "OUTPOST_PAUSE_AT",
    "OUTPOST_AGENT_CONFIG",
    "OUTPOST_CONTROL_PLANE_CONFIG",
    "OUTPOST_STORE",
];

/// A running child; killed on drop.
pub struct Process {
    child: Child,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Process {
    /// Spawns `program args`, appending stdout and stderr to `log`.
    pub fn spawn(program: &Path, args: &[String], log: &Path) -> Result<Self> {
        Self::spawn_with_env(program, args, log, &[])
    }

    /// Like [`Process::spawn`], with extra environment variables (see [`CLEARED_ENV`]).
    pub fn spawn_with_env(program: &Path, args: &[String], log: &Path, env: &[(&str, &str)]) -> Result<Self> {
        let mut cmd = Command::new(program);
        for v in CLEARED_ENV {
            cmd.env_remove(v);
        }
        cmd.envs(env.iter().copied());
        let mut child = cmd
            .args(args)
            .env("OUTPOST_LOG", std::env::var("OUTPOST_LOG").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {}", program.display()))?;
        let lines: Arc<(Mutex<Vec<String>>, Condvar)> = Arc::default();
        let file = Arc::new(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(log)?));
        let stdout = child.stdout.take().context("stdout")?;
        let stderr = child.stderr.take().context("stderr")?;
        for reader in [Box::new(stdout) as Box<dyn std::io::Read + Send>, Box::new(stderr)] {
            let lines = Arc::clone(&lines);
            let file = Arc::clone(&file);
            std::thread::spawn(move || {
                for line in BufReader::new(reader).lines().map_while(Result::ok) {
                    let clean = strip_ansi(&line);
                    if let Ok(mut f) = file.lock() {
                        let _ = writeln!(f, "{clean}");
                    }
                    let (m, cv) = &*lines;
                    if let Ok(mut v) = m.lock() {
                        v.push(clean);
                    }
                    cv.notify_all();
                }
            });
        }
        Ok(Self { child, lines })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until an output line contains `needle` (woken by each new line).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.lines;
        let mut seen = m.lock().map_err(|_| anyhow::anyhow!("log lock"))?;
        loop {
            if seen.iter().any(|l| l.contains(needle)) {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("timed out waiting for {needle:?}; output so far:\n{}", seen.join("\n"));
            }
            seen = cv.wait_timeout(seen, deadline - now).map_err(|_| anyhow::anyhow!("log lock"))?.0;
        }
    }

    /// Lines seen so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`, `KILL`) with kill(1).
    pub fn signal(&self, sig: &str) -> Result<()> {
        let status = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status()?;
        if !status.success() {
            bail!("kill -{sig} {} failed", self.pid());
        }
        Ok(())
    }

    /// SIGKILL and reap.
    pub fn kill_hard(&mut self) -> Result<()> {
        let _ = self.child.kill();
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, then wait up to `timeout` for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.signal("TERM")?;
        let deadline = Instant::now() + timeout;
        let mut backoff = Duration::from_millis(5);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("process {} did not exit within {timeout:?} of SIGTERM", self.pid());
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c2 in chars.by_ref() {
                if c2.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
