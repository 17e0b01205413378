//! The agent as systemd runs it, with systemd's own protocols played by the test: the
//! `sd_notify` datagram socket (`Type=notify`: READY, STATUS, WATCHDOG, RELOADING,
//! STOPPING), SIGHUP reloads (applied, or refused with the running config kept), the
//! local Prometheus endpoint, and structured logs on journald's native socket when
//! `$JOURNAL_STREAM` names the process's stderr.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Every datagram received on the notify socket so far.
struct Notify {
    socket: tokio::net::UnixDatagram,
    seen: Vec<String>,
}

impl Notify {
    fn bind(path: &Path) -> Result<Self> {
        Ok(Self { socket: tokio::net::UnixDatagram::bind(path)?, seen: Vec::new() })
    }

    /// Waits for a datagram for which `want` holds; returns it.
    async fn until(&mut self, what: &str, want: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut buf = vec![0u8; 4096];
        loop {
            let n = tokio::time::timeout_at(deadline, self.socket.recv(&mut buf))
                .await
                .with_context(|| format!("no notify message with {what}; seen: {:#?}", self.seen))??;
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.seen.push(msg.clone());
            if want(&msg) {
                return Ok(msg);
            }
        }
    }
}

async fn scrape(port: u16) -> Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    let (head, body) = out.split_once("\r\n\r\n").context("no HTTP header")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "{head}");
    anyhow::ensure!(head.to_ascii_lowercase().contains("content-type: application/openmetrics-text"), "{head}");
    Ok(body.to_owned())
}

/// The value of the sample whose line starts with `series ` in an exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

fn config(state_dir: &Path, kinds: &str, extra: &str, metrics_port: u16) -> String {
    format!(
        "state_dir: {}\nconnections:\n  sample:\n    kind: sqlite\n    path: sample.db\n    sample: true\n{extra}\
         egress:\n  allowed_kinds: [{kinds}]\nmetrics:\n  listen: 127.0.0.1:{metrics_port}\n",
        state_dir.display()
    )
}

fn pie(connection: &str) -> serde_json::Value {
    serde_json::json!({
        "agent": "edge-1", "connection": connection,
        "sql": "SELECT region, SUM(amount) AS total FROM orders GROUP BY region",
        "render": {"kind": "pie", "label": "region", "value": "total"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_systemd_the_agent_notifies_feeds_the_watchdog_reloads_on_sighup_and_counts_jobs() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut cp = outpost_e2e::ControlPlane::init(root.path())?;
    cp.start()?;
    let mut agent = outpost_e2e::Agent::new(root.path(), "edge-1", "")?;
    let port = outpost_e2e::free_port();
    std::fs::write(&agent.config, config(&agent.state_dir, "table, scalar, bar", "", port))?;
    agent.enroll_with(&cp).await?;
    let sock = root.path().join("notify.sock");
    let mut notify = Notify::bind(&sock)?;
    let sock_env = sock.display().to_string();
    agent.start_with_env(&[("NOTIFY_SOCKET", &sock_env), ("WATCHDOG_USEC", "1000000")])?;

    let ready = notify.until("READY=1", |m| m.lines().any(|l| l == "READY=1")).await?;
    // The control plane may answer before READY=1 is sent (then READY=1 carries the
    // status) or after (a later status says so).
    if !ready.contains("STATUS=Connected to the control plane") {
        notify
            .until("a status saying the control plane is reachable", |m| {
                m.contains("STATUS=Connected to the control plane")
            })
            .await?;
    }
    // WATCHDOG_USEC=1 s: pinged every 0.5 s while the poll loop makes progress.
    for _ in 0..3 {
        notify.until("WATCHDOG=1", |m| m.lines().any(|l| l == "WATCHDOG=1")).await?;
    }

    // A pie chart is refused by the running policy; counted as a rejection by reason.
    let refused = cp.dispatch(pie("sample")).await?;
    let (status, body) = cp.wait_result(&refused).await?;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("egress_refused"), "{body}");
    let scalar = cp
        .dispatch(serde_json::json!({
            "agent": "edge-1", "connection": "sample", "sql": "SELECT COUNT(*) AS n FROM orders",
            "render": {"kind": "scalar", "column": "n"}
        }))
        .await?;
    assert_eq!(cp.wait_result(&scalar).await?.0, 200);
    let m = scrape(port).await?;
    assert_eq!(sample(&m, r#"outpost_agent_jobs_total{verdict="accepted",outcome="succeeded"}"#), Some(1.0), "{m}");
    assert_eq!(sample(&m, r#"outpost_agent_jobs_total{verdict="accepted",outcome="rejected"}"#), Some(1.0), "{m}");
    assert_eq!(sample(&m, r#"outpost_agent_rejections_total{reason="egress_refused"}"#), Some(1.0), "{m}");
    assert_eq!(sample(&m, r#"outpost_agent_egress_decisions_total{action="refused"}"#), Some(1.0), "{m}");
    assert_eq!(sample(&m, "outpost_agent_control_plane_reachable"), Some(1.0), "{m}");
    assert_eq!(sample(&m, "outpost_agent_job_duration_seconds_count"), Some(2.0), "{m}");
    let sent = sample(&m, "outpost_agent_result_bytes_sent_total").context("bytes sent")?;
    let audited: u64 = agent.audit_records()?.iter().filter_map(|r| r["bytes_sent"].as_u64()).sum();
    assert!(sent > 0.0 && (sent - audited as f64).abs() < 0.5, "metrics {sent} vs audit {audited}");
    assert!(!m.contains("SELECT") && !m.contains("orders"), "no SQL in metrics: {m}");

    // SIGHUP with a wider policy and a second connection: applied to new jobs.
    let second = "  second:\n    kind: sqlite\n    path: second.db\n    sample: true\n";
    std::fs::write(&agent.config, config(&agent.state_dir, "table, scalar, bar, pie", second, port))?;
    agent.process()?.signal("HUP")?;
    notify.until("RELOADING=1", |m| m.lines().any(|l| l == "RELOADING=1")).await?;
    notify.until("READY=1 after the reload", |m| m.lines().any(|l| l == "READY=1")).await?;
    agent.process()?.wait_for_log("Reloaded agent.yaml", Duration::from_secs(10))?;
    let id = cp.dispatch(pie("sample")).await?;
    let (status, body) = cp.wait_result(&id).await?;
    assert_eq!(status, 200, "the reloaded policy allows pies: {body}");
    let id = cp.dispatch(pie("second")).await?;
    let (status, body) = cp.wait_result(&id).await?;
    assert_eq!(status, 200, "the reloaded config's new connection: {body}");

    // An invalid file is refused: logged, audited, and the running config stays.
    let good = std::fs::read_to_string(&agent.config)?;
    std::fs::write(&agent.config, good.replace("egress:\n", "limits:\n  max_rows: 0\negress:\n"))?;
    agent.process()?.signal("HUP")?;
    let refused_status =
        notify.until("a status saying the reload was refused", |m| m.contains("STATUS=Reload refused")).await?;
    assert!(refused_status.contains("line 12") && refused_status.contains("must be between 1 and"), "{refused_status}");
    // A field that needs a restart is refused too, naming it.
    let moved = good.replacen(&format!("state_dir: {}", agent.state_dir.display()), "state_dir: /var/lib/elsewhere", 1);
    std::fs::write(&agent.config, &moved)?;
    agent.process()?.signal("HUP")?;
    let restart = notify.until("a refusal naming state_dir", |m| m.contains("STATUS=Reload refused")).await?;
    assert!(restart.contains("state_dir changed"), "{restart}");
    let id = cp.dispatch(pie("second")).await?;
    assert_eq!(cp.wait_result(&id).await?.0, 200, "the running config stayed in force");

    let reloads: Vec<serde_json::Value> =
        agent.audit_records()?.into_iter().filter(|r| r["event"] == "config_reload").collect();
    assert_eq!(reloads.len(), 3, "{reloads:#?}");
    assert_eq!(reloads[0]["outcome"], "applied");
    assert_eq!(reloads[0]["connections"], serde_json::json!(["sample", "second"]));
    assert_eq!(reloads[0]["config_sha256"].as_str().map(str::len), Some(64));
    assert_eq!((reloads[1]["outcome"].as_str(), reloads[2]["outcome"].as_str()), (Some("refused"), Some("refused")));
    assert!(reloads[1]["reason"].as_str().unwrap_or_default().contains("line 12 column 13"), "{}", reloads[1]);
    let log = agent.log_text();
    assert!(log.contains("Config reload refused; the running config stays."), "{log}");
    let m = scrape(port).await?;
    assert_eq!(sample(&m, r#"outpost_agent_config_reloads_total{result="applied"}"#), Some(1.0), "{m}");
    assert_eq!(sample(&m, r#"outpost_agent_config_reloads_total{result="refused"}"#), Some(2.0), "{m}");

    std::fs::write(&agent.config, &good)?;
    agent.process()?.signal("TERM")?;
    notify.until("STOPPING=1", |m| m.lines().any(|l| l == "STOPPING=1")).await?;
    assert!(agent.stop()?.success());
    let (code, out, err) = agent.cli(&["audit", "verify"], None, &[])?;
    assert_eq!(code, 0, "reload records are part of the chain: {out}{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_systemd_the_control_plane_says_ready_with_its_console_feeds_the_watchdog_and_says_stopping() -> Result<()>
{
    let root = tempfile::tempdir()?;
    let mut cp = outpost_e2e::ControlPlane::init(root.path())?;
    let sock = root.path().join("notify.sock");
    let mut notify = Notify::bind(&sock)?;
    let sock_env = sock.display().to_string();
    cp.start_with_env(&[("NOTIFY_SOCKET", &sock_env), ("WATCHDOG_USEC", "1000000")])?;
    let ready = notify.until("READY=1", |m| m.lines().any(|l| l == "READY=1")).await?;
    assert!(ready.contains("STATUS=Serving the console at https://localhost:"), "{ready}");
    assert!(ready.contains("; agents connect to 127.0.0.1:"), "{ready}");
    // WATCHDOG_USEC=1 s: pinged every 0.5 s while the store answers.
    for _ in 0..3 {
        notify.until("WATCHDOG=1", |m| m.lines().any(|l| l == "WATCHDOG=1")).await?;
    }
    cp.process()?.signal("TERM")?;
    notify.until("STOPPING=1", |m| m.lines().any(|l| l == "STOPPING=1")).await?;
    Ok(())
}

fn count(connection: &str) -> serde_json::Value {
    serde_json::json!({
        "agent": "edge-1", "connection": connection, "sql": "SELECT COUNT(*) AS n FROM orders",
        "render": {"kind": "scalar", "column": "n"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_returns_the_verdict_once_applied_and_status_tells_the_daemons_health() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut cp = outpost_e2e::ControlPlane::init(root.path())?;
    cp.start()?;
    let mut agent = outpost_e2e::Agent::new(root.path(), "edge-1", "")?;
    agent.enroll_with(&cp).await?;
    let status = |agent: &outpost_e2e::Agent| agent.cli(&["status"], None, &[]);

    // Before `run`: enrolled, but nothing runs; a reload has nobody to ask.
    let (code, out, _) = status(&agent)?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("daemon:         not running") && out.contains("needs attention: the daemon is not running"),
        "{out}"
    );
    let (code, _, err) = agent.cli(&["reload"], None, &[])?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the agent is not running") && err.contains("agent.sock"), "{err}");

    agent.start_connected()?;
    let (code, out, err) = status(&agent)?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("daemon:         running (pid ") && out.contains("reaches cloud:  yes, since"), "{out}");
    assert!(out.contains("jobs:           0 running, 0 done since the start; last none"), "{out}");
    let id = cp.dispatch(count("sample")).await?;
    assert_eq!(cp.wait_result(&id).await?.0, 200);
    let (_, out, _) = status(&agent)?;
    assert!(out.contains("1 done since the start; last 20"), "{out}");

    // A new connection: once `reload` returns 0 it is in force, and the control plane
    // knows it (no waiting for a log line).
    let good = std::fs::read_to_string(&agent.config)?
        .replace("limits:\n", "  second:\n    kind: sqlite\n    path: second.db\n    sample: true\nlimits:\n");
    std::fs::write(&agent.config, &good)?;
    let (code, out, err) = agent.cli(&["reload"], None, &[])?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Reloaded agent.yaml (sha256 ") && out.contains("connections: sample, second"), "{out}");
    let id = cp.dispatch(count("second")).await?;
    assert_eq!(cp.wait_result(&id).await?.0, 200, "the new connection runs");

    // An invalid file: exit 1 with the reason; the agent audited it and runs on.
    std::fs::write(&agent.config, good.replace("limits:\n", "limits:\n  max_rows: 0\n"))?;
    let (code, out, err) = agent.cli(&["reload"], None, &[])?;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("the agent refused agent.yaml") && err.contains("must be between 1 and"), "{err}");
    let refused = agent.audit_records()?.into_iter().rfind(|r| r["event"] == "config_reload");
    assert_eq!(refused.map(|r| r["outcome"].clone()), Some(serde_json::json!("refused")));
    // A file so broken that its YAML does not parse still reaches the agent to be refused.
    let broken = format!("state_dir: {}\nconnections: [\n", agent.state_dir.display());
    std::fs::write(&agent.config, broken)?;
    let (code, _, err) = agent.cli(&["reload"], None, &[])?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the agent refused agent.yaml"), "{err}");
    // (status reads agent.yaml itself: with the broken file it would name that error.)
    std::fs::write(&agent.config, &good)?;
    let (code, out, _) = status(&agent)?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("last reload:    REFUSED") && out.contains("the last reload was refused"), "{out}");
    let id = cp.dispatch(count("second")).await?;
    assert_eq!(cp.wait_result(&id).await?.0, 200, "the running config stayed in force");

    // A connection whose credential the vault lacks is refused at reload; storing it
    // with --reload brings the connection in as the command returns.
    let pg = outpost_e2e::pg::server()?;
    let with_pg = good.replace("connections:\n", &format!("connections:\n{}", pg.connection_yaml("warehouse")));
    std::fs::write(&agent.config, &with_pg)?;
    let (code, _, err) = agent.cli(&["reload"], None, &[])?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("warehouse"), "{err}");
    let (code, _, err) = agent.cli(&["credentials", "set", "warehouse"], Some("pw\n"), &[])?;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("A running agent uses it from its next reload"), "{err}");
    let (code, out, err) = agent.cli(&["credentials", "set", "warehouse", "--reload"], Some("pw\n"), &[])?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("connections: sample, second, warehouse"), "{out}");
    let mut job = count("warehouse");
    job["sql"] = "SELECT 42 AS n".into();
    let id = cp.dispatch(job).await?;
    let (code, body) = cp.wait_result(&id).await?;
    assert_eq!(code, 200, "{body}");

    // The control plane goes away: status says so and why, and exits 1.
    cp.kill()?;
    outpost_e2e::eventually("status reports the control plane unreachable", Duration::from_secs(30), || async {
        let (code, out, _) = status(&agent)?;
        Ok(code == 1 && out.contains("reaches cloud:  NO since") && out.contains("is unreachable"))
    })
    .await?;

    // SIGKILL leaves the socket file behind; nothing answers there: not running.
    agent.kill()?;
    assert!(agent.state_dir.join("agent.sock").exists());
    let (code, out, _) = status(&agent)?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("daemon:         not running"), "{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_address_off_loopback_is_refused_unless_allowed() -> Result<()> {
    let root = tempfile::tempdir()?;
    let agent = outpost_e2e::Agent::new(root.path(), "edge-1", "")?;
    let base = std::fs::read_to_string(&agent.config)?;
    std::fs::write(&agent.config, format!("{base}metrics:\n  listen: 0.0.0.0:9464\n"))?;
    let (code, _, err) = agent.cli(&["config", "check"], None, &[])?;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("metrics.listen") && err.contains("not a loopback address"), "{err}");
    // The same file checked by path, as before a reload of an edited copy.
    let copy = root.path().join("edited.yaml");
    std::fs::copy(&agent.config, &copy)?;
    let (code, _, err) = outpost_e2e::run_cmd(
        &outpost_e2e::bin("outpost-agent"),
        &["config", "check", copy.to_str().unwrap_or_default()],
        None,
    )?;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("edited.yaml") && err.contains("metrics.listen"), "{err}");
    std::fs::write(&agent.config, format!("{base}metrics:\n  listen: 0.0.0.0:9464\n  allow_non_loopback: true\n"))?;
    let (code, _, err) = agent.cli(&["config", "check"], None, &[])?;
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = agent.cli(&["config", "audit", "--json"], None, &[])?;
    let report: serde_json::Value = serde_json::from_str(&out)?;
    let finding = report["findings"].as_array().and_then(|f| f.iter().find(|f| f["subject"] == "metrics")).cloned();
    assert_eq!(finding.as_ref().map(|f| f["severity"].clone()), Some(serde_json::json!("medium")), "{report}");
    Ok(())
}

/// Fields of one native-protocol journald datagram (`KEY=value` lines, or `KEY`, a
/// little-endian u64 length and the raw value for values with newlines).
fn journal_fields(mut d: &[u8]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    while !d.is_empty() {
        let nl = d.iter().position(|&b| b == b'\n').context("unterminated field")?;
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            out.push((String::from_utf8_lossy(&line[..eq]).into(), String::from_utf8_lossy(&line[eq + 1..]).into()));
            d = &d[nl + 1..];
        } else {
            let rest = &d[nl + 1..];
            let len = u64::from_le_bytes(rest.get(..8).context("length")?.try_into()?) as usize;
            let value = rest.get(8..8 + len).context("value")?;
            out.push((String::from_utf8_lossy(line).into(), String::from_utf8_lossy(value).into()));
            d = rest.get(8 + len + 1..).unwrap_or_default();
        }
    }
    Ok(out)
}

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_stderr_on_the_journal_logs_are_structured_journal_entries_without_secrets() -> Result<()> {
    if Path::new(JOURNAL_SOCKET).exists() {
        bail!(
            "{JOURNAL_SOCKET} exists (a journald runs here): this test plays journald itself and needs a machine \
             without one, as CI's"
        );
    }
    let root = tempfile::tempdir()?;
    std::fs::create_dir_all("/run/systemd/journal")?;
    let journal = std::os::unix::net::UnixDatagram::bind(JOURNAL_SOCKET)?;
    struct Unlink;
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(JOURNAL_SOCKET);
        }
    }
    let _unlink = Unlink;
    journal.set_read_timeout(Some(Duration::from_millis(200)))?;

    let pg = outpost_e2e::pg::server()?;
    let mut cp = outpost_e2e::ControlPlane::init(root.path())?;
    cp.start()?;
    let agent = outpost_e2e::Agent::new(root.path(), "edge-1", "")?;
    let base = std::fs::read_to_string(&agent.config)?;
    std::fs::write(
        &agent.config,
        base.replace("connections:\n", &format!("connections:\n{}", pg.connection_yaml("warehouse"))),
    )?;
    let secret = "journal-must-never-see-this-s3cret";
    let (code, _, err) = agent.cli(&["credentials", "set", "warehouse"], Some(&format!("{secret}\n")), &[])?;
    assert_eq!(code, 0, "{err}");
    let token = cp.enrolment_token("edge-1").await?;
    let (code, out, err) = agent.enroll(&token)?;
    assert_eq!(code, 0, "{out}{err}");

    // stderr is a file whose device and inode the test gives as $JOURNAL_STREAM, which is
    // how systemd tells a service that its stderr is the journal.
    let stderr_path = root.path().join("stderr");
    let stderr = std::fs::File::create(&stderr_path)?;
    let meta = stderr.metadata()?;
    let stream = {
        use std::os::unix::fs::MetadataExt as _;
        format!("{}:{}", meta.dev(), meta.ino())
    };
    let mut child = std::process::Command::new(outpost_e2e::bin("outpost-agent"))
        .args(["--config", &agent.config.display().to_string(), "run"])
        .env("JOURNAL_STREAM", &stream)
        .env("OUTPOST_LOG", "info")
        .env_remove("OUTPOST_LOG_TARGET")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()?;
    let id = cp
        .dispatch(serde_json::json!({
            "agent": "edge-1", "connection": "warehouse", "sql": "SELECT 1 AS n",
            "render": {"kind": "scalar", "column": "n"}
        }))
        .await?;
    let (status, body) = cp.wait_result(&id).await?;
    assert_eq!(status, 200, "{body}");
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let exited = tokio::task::spawn_blocking(move || child.wait()).await??;
    assert!(exited.success());

    let mut entries = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = journal.recv(&mut buf) {
        let raw = &buf[..n];
        assert!(!String::from_utf8_lossy(raw).contains(secret), "a secret reached the journal");
        entries.push(journal_fields(raw)?);
    }
    let field = |e: &Vec<(String, String)>, k: &str| e.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let starting = entries
        .iter()
        .find(|e| field(e, "MESSAGE").as_deref() == Some("Agent starting."))
        .with_context(|| format!("no start entry in {} journal entries", entries.len()))?;
    assert_eq!(field(starting, "OUTPOST_AGENT_ID").as_deref(), Some("edge-1"), "{starting:?}");
    assert_eq!(field(starting, "PRIORITY").as_deref(), Some("6"), "info is priority 6: {starting:?}");
    assert_eq!(field(starting, "SYSLOG_IDENTIFIER").as_deref(), Some("outpost-agent"));
    let verified = entries
        .iter()
        .find(|e| field(e, "MESSAGE").as_deref() == Some("Job verified."))
        .context("no job entry in the journal")?;
    assert_eq!(field(verified, "OUTPOST_CONNECTION").as_deref(), Some("warehouse"), "{verified:?}");
    let on_stderr = std::fs::read_to_string(&stderr_path)?;
    assert!(!on_stderr.contains("Agent starting."), "logs went to the journal, not stderr: {on_stderr}");
    Ok(())
}
