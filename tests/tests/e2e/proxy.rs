//! The agent through a real HTTP `CONNECT` proxy: tinyproxy from Debian, started on
//! loopback by each test (`.ci/run` installs it).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use outpost_e2e::{free_port, Agent, ControlPlane, Process};

/// A tinyproxy in the foreground, logging to its stderr; killed on drop.
struct Tinyproxy {
    port: u16,
    process: Process,
}

impl Tinyproxy {
    /// Starts tinyproxy on `port` with `extra` config lines (e.g. `BasicAuth alice s3cret`).
    fn start(dir: &Path, port: u16, extra: &str) -> Result<Self> {
        let exe = Path::new("/usr/bin/tinyproxy");
        if !exe.exists() {
            bail!("tinyproxy is not installed: apt-get install tinyproxy (.ci/run does this)");
        }
        let conf = dir.join(format!("tinyproxy-{port}-{}.conf", outpost_protocol::ids::new_nonce()));
        // No ConnectPort line: CONNECT to any port is allowed (the control plane's is not 443).
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 600\nLogLevel Connect\nMaxClients 50\nAllow 127.0.0.1\n\
                 PidFile \"{}\"\n{extra}\n",
                dir.join(format!("tinyproxy-{port}.pid")).display()
            ),
        )?;
        let args = vec!["-d".to_owned(), "-c".into(), conf.display().to_string()];
        let process = Process::spawn(exe, &args, &dir.join("tinyproxy.log"))?;
        process.wait_for_log("Reloading config file finished", Duration::from_secs(10))?;
        // Listening follows the config; wait until the port accepts.
        outpost_e2e::eventually_blocking(&format!("tinyproxy listens on {port}"), Duration::from_secs(10), || {
            Ok(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
        })?;
        Ok(Self { port, process })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Tunnels tinyproxy opened or was asked for to `target`.
    fn connects_to(&self, target: &str) -> usize {
        let needle = format!("CONNECT {target} ");
        self.process.lines().iter().filter(|l| l.contains(&needle)).count()
    }
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

fn job() -> serde_json::Value {
    serde_json::json!({
        "agent": "edge-1", "connection": "sample",
        "sql": "SELECT COUNT(*) AS n FROM orders", "render": { "kind": "table", "format": "json" }
    })
}

fn store_credential(agent: &Agent, name: &str, secret: &str) -> Result<()> {
    let (code, out, err) = agent.cli(&["credentials", "set", name], Some(&format!("{secret}\n")), &[])?;
    anyhow::ensure!(code == 0, "credentials set: {out}{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_and_jobs_go_through_an_authenticating_proxy_with_the_password_from_the_vault() -> Result<()> {
    let root = tempfile::tempdir()?;
    let proxy = Tinyproxy::start(root.path(), free_port(), "BasicAuth alice pw-canary-51c7")?;
    let mut cp = ControlPlane::init(root.path())?;
    cp.start()?;
    let mut agent = Agent::new(root.path(), "edge-1", "")?;
    store_credential(&agent, "proxy-pass", "pw-canary-51c7")?;
    append(
        &agent.config,
        &format!("proxy:\n  url: {}\n  username: alice\n  password_credential: proxy-pass\n", proxy.url()),
    )?;
    agent.enroll_with(&cp).await?;
    assert_eq!(proxy.connects_to(&cp.agent_addr), 1, "enrolment went through the proxy");
    agent.start_connected()?;
    let id = cp.dispatch(job()).await?;
    let (status, body) = cp.wait_result(&id).await?;
    assert_eq!(status, 200, "{body}");
    assert!(proxy.connects_to(&cp.agent_addr) >= 2, "the mTLS connection went through the proxy");
    assert!(agent.log_text().contains("through the proxy"), "{}", agent.log_text());
    assert!(!agent.log_text().contains("pw-canary-51c7"), "the proxy password is never logged");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_refuses_the_tunnel_is_reported_and_the_agent_recovers_by_itself() -> Result<()> {
    let root = tempfile::tempdir()?;
    let port = free_port();
    let (cp, mut agent) = outpost_e2e::enrolled_offline(root.path()).await?;
    store_credential(&agent, "proxy-pass", "wrong-password")?;
    append(
        &agent.config,
        &format!("proxy:\n  url: http://127.0.0.1:{port}\n  username: alice\n  password_credential: proxy-pass\n"),
    )?;
    let refusing = Tinyproxy::start(root.path(), port, "BasicAuth alice right-password")?;
    agent.start()?;
    let p = agent.process()?;
    p.wait_for_log("refused the tunnel", Duration::from_secs(20))?;
    let refusal = p.lines().into_iter().find(|l| l.contains("refused the tunnel")).context("refusal line")?;
    // tinyproxy says 401 to a CONNECT with bad credentials (most proxies say 407).
    assert!(refusal.contains(" 401 ") || refusal.contains(" 407 "), "{refusal}");
    assert!(refusal.contains(&format!("127.0.0.1:{port}")), "{refusal}");
    assert!(refusal.contains("proxy.password_credential"), "the message says what to check: {refusal}");
    assert!(!agent.log_text().contains("wrong-password"));

    // The proxy's administrators let the agent through (same address, no auth now); the
    // agent, still backing off, gets through by itself.
    drop(refusing);
    let _open = Tinyproxy::start(root.path(), port, "")?;
    agent.process()?.wait_for_log("Control plane reachable", Duration::from_secs(40))?;
    let id = cp.dispatch(job()).await?;
    assert_eq!(cp.wait_result(&id).await?.0, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_proxy_from_the_environment_is_used_unless_no_proxy_covers_the_control_plane() -> Result<()> {
    let root = tempfile::tempdir()?;
    let proxy = Tinyproxy::start(root.path(), free_port(), "")?;
    let (cp, mut agent) = outpost_e2e::enrolled_offline(root.path()).await?;
    let url = proxy.url();

    agent.start_with_env(&[("HTTPS_PROXY", &url), ("NO_PROXY", "localhost,127.0.0.0/8")])?;
    agent.process()?.wait_for_log("Control plane reachable", Duration::from_secs(30))?;
    let id = cp.dispatch(job()).await?;
    assert_eq!(cp.wait_result(&id).await?.0, 200);
    assert_eq!(proxy.connects_to(&cp.agent_addr), 0, "NO_PROXY: direct");
    agent.stop()?;

    agent.start_with_env(&[("https_proxy", &url)])?;
    agent.process()?.wait_for_log("Control plane reachable", Duration::from_secs(30))?;
    let id = cp.dispatch(job()).await?;
    assert_eq!(cp.wait_result(&id).await?.0, 200);
    assert!(proxy.connects_to(&cp.agent_addr) >= 1, "https_proxy: through the proxy");
    Ok(())
}
